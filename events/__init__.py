"""The event stream: an outbox table written in the same transaction as every change other
systems care about, read in order by sequence (WatchEvents, `surge events tail`).

Writers call `append` (or the SQL function append_event) inside their own transaction;
nothing here knows gRPC. Calls go down: flashsale, points and inventory call this package;
it calls only common.
"""

from __future__ import annotations

from events.model import EventType
from events.store import append

__all__ = ["EventType", "append"]
