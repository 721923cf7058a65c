"""Code pools through CodeService: uploads with rejected lines, the pool's counts, a
merchant's verify and consume (idempotent, ALREADY_CONSUMED), and the refusals that change
nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import campaign_pb2, catalog_pb2, codes_pb2, codes_pb2_grpc, common_pb2
from tests import auth

if TYPE_CHECKING:
    from loyalty.v1.codes_pb2_grpc import CodeServiceAsyncStub
from tests.conftest import Running
from tests.factories import failure
from tests.inventory.codes_helpers import consume, pool, pool_item, stub, upload, verify

R = codes_pb2


async def test_an_upload_loads_good_lines_and_reports_each_rejected_one(server: Running) -> None:
    item = await pool_item(server.api)
    first = await upload(server, item.id, ["OLD-1"])
    assert (first.loaded, first.rejected, first.remaining) == (1, 0, 1)

    # Two messages; lines are numbered across them.
    answer = await upload(
        server,
        item.id,
        ["A-1", "", "x" * 129, "A-1"],
        ["OLD-1", "has space", "tab\there", "B-2", "y" * 128],
    )

    assert (answer.loaded, answer.rejected, answer.remaining) == (3, 6, 4)
    assert [(r.line, r.reason) for r in answer.rejected_lines] == [
        (2, R.REJECT_REASON_EMPTY),
        (3, R.REJECT_REASON_TOO_LONG),
        (4, R.REJECT_REASON_DUPLICATE_IN_FILE),
        (5, R.REJECT_REASON_ALREADY_LOADED),
        (6, R.REJECT_REASON_NOT_PRINTABLE),
        (7, R.REJECT_REASON_NOT_PRINTABLE),
    ]
    counts = await pool(server, item.id)
    assert (counts.loaded, counts.available, counts.issued, counts.consumed) == (4, 4, 0, 0)
    # A pool item's stock is its codes: they can be allotted.
    fetched = await server.api.catalog.GetItem(catalog_pb2.GetItemRequest(item_id=item.id))
    assert fetched.stock_on_hand == 4 and fetched.code_source == catalog_pb2.CODE_SOURCE_POOL
    async with server.app.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT code FROM item_codes WHERE item_id = %s ORDER BY id", (item.id,)
            )
        ).fetchall()
        audited = await (
            await conn.execute(
                "SELECT subject, content FROM audit_events WHERE action = 'codes.import_codes' "
                "ORDER BY id"
            )
        ).fetchall()
    assert [r[0] for r in rows] == ["OLD-1", "A-1", "B-2", "y" * 128]
    assert [(s, c["loaded"], c["rejected"]) for s, c in audited] == [
        (auth.TEST_SUBJECT, 1, 0),
        (auth.TEST_SUBJECT, 3, 6),
    ]


async def test_rejected_lines_are_all_counted_and_the_first_100_listed(server: Running) -> None:
    item = await pool_item(server.api)
    answer = await upload(server, item.id, [""] * 150 + ["OK-1"])
    assert (answer.loaded, answer.rejected, len(answer.rejected_lines)) == (1, 150, 100)
    assert answer.rejected_lines[-1].line == 100


async def test_bad_uploads_are_refused_and_load_nothing(server: Running) -> None:
    api = server.api
    item = await pool_item(api)
    generated = await api.item()

    async def refused(*args: object, **kwargs: object) -> tuple[grpc.StatusCode, str, str]:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await upload(server, *args, **kwargs)  # type: ignore[arg-type]
        f = failure(e.value)
        return f.code, f.reason, f.field or f.metadata.get("field", "")

    assert await refused(generated.id, ["A"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_A_POOL_ITEM",
        "item_id",
    )
    assert (await refused(item.id, ["A"], first_item_id=""))[::2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "item_id",
    )
    assert (await refused(str(uuid.uuid4()), ["A"]))[0] == grpc.StatusCode.NOT_FOUND
    # A later message naming another item.
    with pytest.raises(grpc.aio.AioRpcError) as other:

        async def messages() -> AsyncIterator[codes_pb2.ImportCodesRequest]:
            yield R.ImportCodesRequest(item_id=item.id, codes=["A"])
            yield R.ImportCodesRequest(item_id=generated.id, codes=["B"])

        await stub(server).ImportCodes(messages(), metadata=auth.bearer(auth.token()))
    assert (failure(other.value).code, failure(other.value).field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "item_id",
    )
    counts = await pool(server, item.id)
    assert counts.loaded == 0
    # A pool is for virtual goods only.
    with pytest.raises(grpc.aio.AioRpcError) as physical:
        await api.catalog.CreateItem(
            catalog_pb2.CreateItemRequest(
                sku="P-1",
                name="Mug",
                kind=common_pb2.ITEM_KIND_PHYSICAL,
                code_source=catalog_pb2.CODE_SOURCE_POOL,
            )
        )
    assert failure(physical.value).field == "code_source"


async def test_a_campaign_cannot_promise_more_codes_than_the_pool_has(server: Running) -> None:
    api = server.api
    item = await pool_item(api)
    await upload(server, item.id, ["C-1", "C-2", "C-3"])
    await api.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            item_id=item.id, delta=10, reason="more stock than codes", idempotency_key="k1"
        )
    )

    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await api.campaign(item_id=item.id, units=4)
    f = failure(too_many.value)
    assert (f.code, f.reason, f.metadata["field"], f.metadata["codes_available"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CODE_POOL_TOO_SMALL",
        "units_allotted",
        "3",
    )
    with pytest.raises(grpc.aio.AioRpcError) as cash:
        await api.campaign(item_id=item.id, units=1, cash_price_cents=100)
    assert failure(cash.value).field == "cash_price_cents"

    campaign = await api.campaign(item_id=item.id, units=2)
    # Another campaign may have only what the first did not promise.
    with pytest.raises(grpc.aio.AioRpcError) as second:
        await api.campaign(item_id=item.id, units=2)
    assert failure(second.value).metadata["codes_available"] == "1"
    # Raising the first one's allotment past the pool is refused the same way.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await api.campaigns.UpdateCampaign(
            campaign_pb2.UpdateCampaignRequest(
                campaign=campaign_pb2.Campaign(id=campaign.id, units_allotted=4),
                update_mask=field_mask_pb2.FieldMask(paths=["units_allotted"]),
            )
        )
    assert failure(raised.value).reason == "CODE_POOL_TOO_SMALL"
    assert (await api.get_campaign(campaign.id)).units_allotted == 2


async def test_a_merchant_consumes_an_issued_code_once(server: Running) -> None:
    api = server.api
    item = await pool_item(api)
    await upload(server, item.id, ["V-1", "V-2"])
    campaign = await api.campaign(item_id=item.id, units=1)
    member = await api.member(points=1000)
    redeemed = (await api.redeem(member.id, campaign.id)).redemption
    code = redeemed.redemption_code
    assert code == "V-1"  # oldest loaded first

    seen = await verify(server, item.id, code)
    assert (seen.status, seen.consumable, seen.redemption_id, seen.member_id) == (
        R.CODE_STATUS_ISSUED,
        True,
        redeemed.id,
        member.id,
    )
    first = await consume(server, item.id, code, "req-1")
    again = await consume(server, item.id, code, "req-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert first.code == again.code
    assert first.code.status == R.CODE_STATUS_CONSUMED and not first.code.consumable
    assert first.code.merchant_id == "shop-1" and first.code.HasField("consume_time")

    with pytest.raises(grpc.aio.AioRpcError) as second:
        await consume(server, item.id, code, "req-2")
    f = failure(second.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_CONSUMED")
    # The same request id from another merchant is another request.
    with pytest.raises(grpc.aio.AioRpcError) as other_merchant:
        await consume(server, item.id, code, "req-1", merchant_id="shop-2")
    assert failure(other_merchant.value).reason == "ALREADY_CONSUMED"

    with pytest.raises(grpc.aio.AioRpcError) as unissued:
        await consume(server, item.id, "V-2", "req-3")
    assert failure(unissued.value).reason == "CODE_NOT_ISSUED"
    assert (await verify(server, item.id, "V-2")).status == R.CODE_STATUS_AVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await consume(server, item.id, "NOPE", "req-4")
    assert failure(unknown.value).code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await consume(server, item.id, code, "")
    assert failure(bad.value).field == "request_id"

    async with server.app.pool.connection() as conn:
        events = await (
            await conn.execute(
                "SELECT subject_id, payload FROM events WHERE type = 'code.consumed'"
            )
        ).fetchall()
    assert [(s, p["merchant_id"], p["request_id"]) for s, p in events] == [
        (redeemed.id, "shop-1", "req-1")
    ]
    counts = await pool(server, item.id)
    assert (counts.available, counts.issued, counts.consumed) == (1, 0, 1)


async def test_concurrent_consumes_of_one_code_let_exactly_one_through(server: Running) -> None:
    api = server.api
    item = await pool_item(api)
    await upload(server, item.id, ["RACE-1"])
    campaign = await api.campaign(item_id=item.id, units=1)
    member = await api.member(points=1000)
    await api.redeem(member.id, campaign.id)

    results = await asyncio.gather(
        *(consume(server, item.id, "RACE-1", f"till-{i}") for i in range(8)),
        return_exceptions=True,
    )

    won = [r for r in results if isinstance(r, R.ConsumeCodeResponse)]
    lost = [failure(r).reason for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and not won[0].replayed
    assert lost == ["ALREADY_CONSUMED"] * 7
    assert (await verify(server, item.id, "RACE-1")).merchant_id == "shop-1"


async def test_scopes_keep_merchants_and_operators_apart(server: Running) -> None:
    item = await pool_item(server.api)
    port = server.app.port
    merchant = auth.channel(f"127.0.0.1:{port}", auth.token(["merchant"]))
    storefront = auth.channel(f"127.0.0.1:{port}", auth.token(["storefront"]))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await codes_stub(merchant).GetCodePool(R.GetCodePoolRequest(item_id=item.id))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await codes_stub(storefront).VerifyCode(R.VerifyCodeRequest(item_id=item.id, code="A"))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # The merchant reaches VerifyCode (and learns the code does not exist).
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await codes_stub(merchant).VerifyCode(R.VerifyCodeRequest(item_id=item.id, code="A"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await merchant.close()
        await storefront.close()


def codes_stub(channel: grpc.aio.Channel) -> CodeServiceAsyncStub:
    return codes_pb2_grpc.CodeServiceStub(channel)
