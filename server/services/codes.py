"""CodeService. Operators load and count a POOL item's codes; merchants verify and consume
them (inventory/codes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from common.errors import InvalidArgument
from inventory.codes import MAX_CODES_PER_UPLOAD, CodePools
from loyalty.v1 import codes_pb2, codes_pb2_grpc
from server import convert_codes

if TYPE_CHECKING:
    from server.services import Context


class CodeService(codes_pb2_grpc.CodeServiceServicer):
    def __init__(self, pools: CodePools) -> None:
        self._pools = pools

    async def ImportCodes(
        self, request_iterator: AsyncIterator[codes_pb2.ImportCodesRequest], context: Context
    ) -> codes_pb2.ImportCodesResponse:
        # The whole upload is read before PostgreSQL is touched: a slow client never holds
        # a connection or the item's lock. Its size is bounded (MAX_CODES_PER_UPLOAD).
        item_id = ""
        codes: list[str] = []
        async for message in request_iterator:
            if not item_id:
                if not message.item_id:
                    raise InvalidArgument("item_id", "is required in the first message")
                item_id = message.item_id
            elif message.item_id and message.item_id != item_id:
                raise InvalidArgument("item_id", "must be the same in every message")
            codes.extend(message.codes)
            if len(codes) > MAX_CODES_PER_UPLOAD:
                raise InvalidArgument("codes", f"at most {MAX_CODES_PER_UPLOAD} codes an upload")
        if not item_id:
            raise InvalidArgument("item_id", "is required in the first message")
        return convert_codes.imported(await self._pools.import_codes(item_id, codes))

    async def GetCodePool(
        self, request: codes_pb2.GetCodePoolRequest, context: Context
    ) -> codes_pb2.GetCodePoolResponse:
        found = await self._pools.get_pool(request.item_id)
        return codes_pb2.GetCodePoolResponse(pool=convert_codes.pool(found))

    async def VerifyCode(
        self, request: codes_pb2.VerifyCodeRequest, context: Context
    ) -> codes_pb2.VerifyCodeResponse:
        found = await self._pools.verify(request.item_id, request.code)
        return codes_pb2.VerifyCodeResponse(code=convert_codes.info(found))

    async def ConsumeCode(
        self, request: codes_pb2.ConsumeCodeRequest, context: Context
    ) -> codes_pb2.ConsumeCodeResponse:
        consumed = await self._pools.consume(
            item_id=request.item_id,
            code=request.code,
            request_id=request.request_id,
            merchant_id=request.merchant_id,
        )
        return codes_pb2.ConsumeCodeResponse(
            code=convert_codes.info(consumed.code), replayed=consumed.replayed
        )
