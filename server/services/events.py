"""EventService. The warehouse, operators and reports: the outbox as an ordered, resumable
stream (events.stream.EventStream; docs/events.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from events import feed
from events.stream import EventStream
from loyalty.v1 import events_pb2, events_pb2_grpc

if TYPE_CHECKING:
    from server.services import Context


class EventService(events_pb2_grpc.EventServiceServicer):
    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        watch = self._stream.watch(request.after_sequence, tuple(request.types))
        try:
            async for event in watch:
                yield events_pb2.WatchEventsResponse(event=to_proto(event))
        finally:
            await watch.aclose()  # the consumer went: the watcher count drops now


def to_proto(event: feed.Event) -> events_pb2.Event:
    occurred = Timestamp()
    occurred.FromDatetime(event.occurred_at)
    return events_pb2.Event(
        sequence=event.sequence,
        type=event.type,
        subject_kind=event.subject_kind,
        subject_id=event.subject_id,
        actor=event.actor or "",
        occurred_at=occurred,
        payload_json=json.dumps(event.payload, separators=(",", ":"), sort_keys=True),
    )
