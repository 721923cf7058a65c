"""How Surge's services are added to its gRPC server (and the bench's bare floor's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc


class GenericHandlersOnly:
    """The server as the generated `add_*_to_server` functions see it: their generic handlers
    reach it, their per-method registrations do not.

    Why: grpc.aio keeps one pending request per registered method and, for every call that
    arrives, runs asyncio.wait over all of them: a done callback added to and removed from
    each, O(methods) work per call. With Surge's 85 methods that was ~120 µs of server CPU
    a call, more than a third of a bare Health/Check (py-spy --native, docs/performance.md).
    The generic handlers the same functions add answer every one of those methods (a dict
    lookup per service), and an unknown method is UNIMPLEMENTED as before."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        pass  # the generic handler added beside it serves these methods

    def as_server(self) -> grpc.aio.Server:
        """What the generated functions' signatures ask for (they call only the two above)."""
        return cast(grpc.aio.Server, self)
