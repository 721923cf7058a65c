"""LotteryService. Operators create lotteries; members (through the gateway) draw."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lottery.draws import Draws
from lottery.lotteries import Lotteries
from loyalty.v1 import lottery_pb2, lottery_pb2_grpc
from server import convert, convert_lottery

if TYPE_CHECKING:
    from server.services import Context


class LotteryService(lottery_pb2_grpc.LotteryServiceServicer):
    def __init__(self, lotteries: Lotteries, draws: Draws) -> None:
        self._lotteries = lotteries
        self._draws = draws

    async def CreateLottery(
        self, request: lottery_pb2.CreateLotteryRequest, context: Context
    ) -> lottery_pb2.Lottery:
        created = await self._lotteries.create(
            name=request.name,
            cost_points=request.cost_points,
            starts_at=convert.required_time("starts_at", request, "starts_at"),
            ends_at=convert.required_time("ends_at", request, "ends_at"),
            per_member_daily=request.per_member_daily,
            per_member_total=request.per_member_total,
            prizes=convert_lottery.prize_specs(list(request.prizes)),
        )
        return convert_lottery.lottery(created)

    async def GetLottery(
        self, request: lottery_pb2.GetLotteryRequest, context: Context
    ) -> lottery_pb2.Lottery:
        return convert_lottery.lottery(await self._lotteries.get(request.lottery_id))

    async def ListLotteries(
        self, request: lottery_pb2.ListLotteriesRequest, context: Context
    ) -> lottery_pb2.ListLotteriesResponse:
        found, token = await self._lotteries.list_page(
            page_size=request.page_size, page_token=request.page_token
        )
        return lottery_pb2.ListLotteriesResponse(
            lotteries=[convert_lottery.lottery(x) for x in found], next_page_token=token
        )

    async def Draw(
        self, request: lottery_pb2.DrawRequest, context: Context
    ) -> lottery_pb2.DrawResponse:
        drawn = await self._draws.draw(
            member_id=request.member_id,
            lottery_id=request.lottery_id,
            idempotency_key=request.idempotency_key,
            shipping_address=convert_lottery.address(request),
        )
        return lottery_pb2.DrawResponse(
            draw=convert_lottery.draw(drawn.draw), replayed=drawn.replayed
        )

    async def GetDraw(
        self, request: lottery_pb2.GetDrawRequest, context: Context
    ) -> lottery_pb2.LotteryDraw:
        return convert_lottery.draw(
            await self._draws.get(member_id=request.member_id, draw_id=request.draw_id)
        )
