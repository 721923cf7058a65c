"""Reading the event stream through a real channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import grpc

from loyalty.v1 import events_pb2, events_pb2_grpc
from server import scopes
from tests import auth


def call(
    channel: grpc.aio.Channel,
    after: int = 0,
    types: tuple[str, ...] = (),
    scope_names: tuple[str, ...] = (scopes.FULFILMENT,),
) -> Any:
    """A WatchEvents call (streams do not go through the test channel's credential
    interceptor: the credential is sent here)."""
    return events_pb2_grpc.EventServiceStub(channel).WatchEvents(
        events_pb2.WatchEventsRequest(after_sequence=after, types=list(types)),
        metadata=auth.bearer(auth.token(scope_names)),
    )


class Watcher:
    """A consumer: a task reads the stream into a queue, so waiting for an event with a
    timeout never cancels the call itself."""

    def __init__(self, channel: grpc.aio.Channel, after: int = 0, **kw: Any) -> None:
        self.call = call(channel, after, **kw)
        self.queue: asyncio.Queue[events_pb2.Event | BaseException] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                await self.queue.put(response.event)
        except BaseException as e:  # the call's error, for the test to see
            await self.queue.put(e)

    async def take(self, n: int, timeout_s: float = 10.0) -> list[events_pb2.Event]:
        got = []
        for _ in range(n):
            item = await asyncio.wait_for(self.queue.get(), timeout_s)
            if isinstance(item, BaseException):
                raise item
            got.append(item)
        return got

    async def quiet(self, wait_s: float = 0.7) -> bool:
        """True when nothing comes within wait_s."""
        try:
            item = await asyncio.wait_for(self.queue.get(), wait_s)
        except TimeoutError:
            return True
        await self.queue.put(item)  # not consumed (order is kept: it was the only one)
        return False

    async def close(self) -> None:
        self.call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def everything(
    channel: grpc.aio.Channel, after: int = 0, **kw: Any
) -> list[events_pb2.Event]:
    """All events after `after` there are now: read until the stream is quiet."""
    watcher = Watcher(channel, after, **kw)
    got: list[events_pb2.Event] = []
    try:
        while True:
            try:
                got += await watcher.take(1, 1.5)
            except TimeoutError:
                return got
    finally:
        await watcher.close()


def payload(event: events_pb2.Event) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(event.payload_json)
    return result
