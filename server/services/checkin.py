"""CheckInService. Members (through the gateway) check in once a day and read their streak."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalty.v1 import checkin_pb2, checkin_pb2_grpc
from points.checkin import CheckIns
from server import convert

if TYPE_CHECKING:
    from server.services import Context


class CheckInService(checkin_pb2_grpc.CheckInServiceServicer):
    def __init__(self, checkins: CheckIns) -> None:
        self._checkins = checkins

    async def CheckIn(
        self, request: checkin_pb2.CheckInRequest, context: Context
    ) -> checkin_pb2.CheckInResponse:
        done = await self._checkins.check_in(
            member_id=request.member_id, idempotency_key=request.idempotency_key
        )
        return checkin_pb2.CheckInResponse(
            day=done.checkin.day.isoformat(),
            streak=done.checkin.streak,
            points_credited=done.checkin.points,
            next_reward=done.next_reward,
            replayed=done.replayed,
            balance=convert.balance(done.balance),
            ledger_entry_id=done.checkin.ledger_entry_id,
        )

    async def GetCheckInStatus(
        self, request: checkin_pb2.GetCheckInStatusRequest, context: Context
    ) -> checkin_pb2.GetCheckInStatusResponse:
        status = await self._checkins.status(member_id=request.member_id)
        return checkin_pb2.GetCheckInStatusResponse(
            streak=status.streak,
            checked_in_today=status.checked_in_today,
            next_reward=status.next_reward,
            last_day=status.last_day.isoformat() if status.last_day else "",
            today=status.today.isoformat(),
        )
