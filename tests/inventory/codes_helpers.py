"""Code pools through a real channel: a POOL item, an upload, a merchant's calls."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from loyalty.v1 import catalog_pb2, codes_pb2, codes_pb2_grpc, common_pb2
from tests import auth

if TYPE_CHECKING:
    from loyalty.v1.codes_pb2_grpc import CodeServiceAsyncStub
from tests.conftest import Running
from tests.factories import Api


def stub(running: Running) -> CodeServiceAsyncStub:
    return codes_pb2_grpc.CodeServiceStub(running.channel)


async def pool_item(api: Api) -> catalog_pb2.Item:
    return await api.catalog.CreateItem(
        catalog_pb2.CreateItemRequest(
            sku="pool-" + uuid.uuid4().hex[:12],
            name="Coffee voucher",
            kind=common_pb2.ITEM_KIND_VIRTUAL,
            initial_stock=0,
            code_source=catalog_pb2.CODE_SOURCE_POOL,
        )
    )


async def upload(
    running: Running, item_id: str, *chunks: Sequence[str], first_item_id: str | None = None
) -> codes_pb2.ImportCodesResponse:
    """ImportCodes with one message per chunk, the item named in the first. The test
    channel's interceptor adds the credential to unary calls only: a stream sends its own."""

    async def messages() -> AsyncIterator[codes_pb2.ImportCodesRequest]:
        for i, chunk in enumerate(chunks):
            named = (item_id if first_item_id is None else first_item_id) if i == 0 else ""
            yield codes_pb2.ImportCodesRequest(item_id=named, codes=list(chunk))

    return await stub(running).ImportCodes(messages(), metadata=auth.bearer(auth.token()))


async def pool(running: Running, item_id: str) -> codes_pb2.CodePool:
    answer = await stub(running).GetCodePool(codes_pb2.GetCodePoolRequest(item_id=item_id))
    return answer.pool


async def consume(
    running: Running, item_id: str, code: str, request_id: str, merchant_id: str = "shop-1"
) -> codes_pb2.ConsumeCodeResponse:
    return await stub(running).ConsumeCode(
        codes_pb2.ConsumeCodeRequest(
            item_id=item_id, code=code, request_id=request_id, merchant_id=merchant_id
        )
    )


async def verify(running: Running, item_id: str, code: str) -> codes_pb2.CodeInfo:
    answer = await stub(running).VerifyCode(codes_pb2.VerifyCodeRequest(item_id=item_id, code=code))
    return answer.code
