"""The daily check-in's domain object, built from the App's ledger (kept out of
server/app.py, which is near its size limit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from points.checkin import CheckIns

if TYPE_CHECKING:
    from server.app import App


def build(app: App) -> CheckIns:
    return CheckIns(app.points.context, app.points.members, app.points.earning)
