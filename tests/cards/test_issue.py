"""Card types and batch issue through the API: sequential numbers with valid check digits,
written in one go; a second batch continues without overlap; retries by request_id; bad
input changes nothing."""

from __future__ import annotations

import grpc
import pytest

from cards import numbers
from loyalty.v1 import cards_pb2
from tests.cards.helpers import card_type, issue, pg_exec, pg_rows, stub
from tests.conftest import Running
from tests.factories import failure


async def test_a_batch_of_1000_is_sequential_valid_and_written_in_one_transaction(
    server: Running,
) -> None:
    await card_type(server, prefix="604")
    first = (await issue(server, "gold-card", 1000)).batch
    second = (await issue(server, "gold-card", 250)).batch

    assert (first.count, first.first_number, first.last_number) == (
        1000,
        numbers.number("604", 0),
        numbers.number("604", 999),
    )
    assert second.first_number == numbers.number("604", 1000)  # continues, no overlap
    rows = pg_rows(
        server,
        "SELECT number, xmin::text, state FROM cards WHERE batch_id = %s ORDER BY number",
        first.id,
    )
    assert [r[0] for r in rows] == [numbers.number("604", s) for s in range(1000)]
    assert all(numbers.luhn_valid(r[0]) and r[2] == "ISSUED" for r in rows)
    assert len({r[1] for r in rows}) == 1  # one transaction wrote them all
    assert pg_rows(server, "SELECT count(DISTINCT number), count(*) FROM cards") == [(1250, 1250)]
    got = await stub(server).ExportCards(
        cards_pb2.ExportCardsRequest(batch_id=second.id, page_size=200)
    )
    rest = await stub(server).ExportCards(
        cards_pb2.ExportCardsRequest(batch_id=second.id, page_token=got.next_page_token)
    )
    assert list(got.card_numbers) + list(rest.card_numbers) == [
        numbers.number("604", s) for s in range(1000, 1250)
    ]
    assert rest.next_page_token == ""
    kinds = pg_rows(server, "SELECT action, subject FROM audit_events ORDER BY occurred_at, id")
    assert kinds == [
        ("card.create_card_type", "test-suite"),
        ("card.issue_cards", "test-suite"),
        ("card.issue_cards", "test-suite"),
    ]


async def test_issue_is_idempotent_by_request_id(server: Running) -> None:
    await card_type(server)
    made = await issue(server, "gold-card", 10, "print-run-1")
    again = await issue(server, "gold-card", 10, "print-run-1")

    assert (again.batch, again.replayed, made.replayed) == (made.batch, True, False)
    assert pg_rows(server, "SELECT count(*) FROM cards") == [(10,)]
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await issue(server, "gold-card", 11, "print-run-1")
    assert failure(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"
    assert pg_rows(server, "SELECT count(*), max(next_serial) FROM cards, card_types") == [(10, 10)]


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    server: Running,
) -> None:
    await card_type(server, prefix="12")
    bad_types = [
        (
            cards_pb2.CreateCardTypeRequest(code="x", name="X", prefix="9", default_tier="diamond"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "default_tier",
        ),
        (
            cards_pb2.CreateCardTypeRequest(code="x", name="X", prefix="9a"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "prefix",
        ),
        (
            cards_pb2.CreateCardTypeRequest(code="x", name="X", prefix="123"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "prefix",
        ),  # its numbers could be type 12's
        (
            cards_pb2.CreateCardTypeRequest(code="x", name="X", prefix="1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "prefix",
        ),
        (
            cards_pb2.CreateCardTypeRequest(code="x y", name="X", prefix="9"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "code",
        ),
        (
            cards_pb2.CreateCardTypeRequest(code="gold-card", name="X", prefix="9"),
            grpc.StatusCode.ALREADY_EXISTS,
            "",
        ),
    ]
    for request, code, field in bad_types:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub(server).CreateCardType(request)
        f = failure(bad.value)
        assert (f.code, f.field) == (code, field), request
    bad_issues = [
        (
            cards_pb2.IssueCardsRequest(card_type="gold-card", count=0, request_id="a"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "count",
        ),
        (
            cards_pb2.IssueCardsRequest(card_type="gold-card", count=100_001, request_id="a"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "count",
        ),
        (
            cards_pb2.IssueCardsRequest(card_type="gold-card", count=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "request_id",
        ),
        (
            cards_pb2.IssueCardsRequest(card_type="nope", count=5, request_id="a"),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
    ]
    for issue_request, code, field in bad_issues:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub(server).IssueCards(issue_request)
        f = failure(bad.value)
        assert (f.code, f.field) == (code, field), issue_request
    assert pg_rows(server, "SELECT code, next_serial FROM card_types") == [("gold-card", 0)]
    assert pg_rows(server, "SELECT count(*) FROM card_batches") == [(0,)]
    assert pg_rows(server, "SELECT count(*) FROM audit_events") == [(1,)]  # the type only


async def test_a_type_runs_out_of_numbers_rather_than_overlapping(server: Running) -> None:
    # 8 prefix digits leave 10^7 serials; the sequence is moved to near the end.
    await card_type(server, prefix="12345678")
    pg_exec(server, "UPDATE card_types SET next_serial = 9999998")
    made = (await issue(server, "gold-card", 2)).batch
    assert made.last_number == numbers.number("12345678", 9_999_999)
    with pytest.raises(grpc.aio.AioRpcError) as full:
        await issue(server, "gold-card", 1)
    assert failure(full.value).field == "count"


async def test_export_and_replace_refuse_bad_input_naming_the_field(server: Running) -> None:
    await card_type(server)
    made = (await issue(server, "gold-card", 3)).batch
    cases = [
        (cards_pb2.ExportCardsRequest(batch_id="nope"), "batch_id"),
        (cards_pb2.ExportCardsRequest(batch_id=made.id, page_size=10_001), "page_size"),
        (cards_pb2.ExportCardsRequest(batch_id=made.id, page_token="x"), "page_token"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub(server).ExportCards(request)
        assert (failure(bad.value).code, failure(bad.value).field) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
        )
    wrong = made.first_number[:-1] + str((int(made.first_number[-1]) + 1) % 10)
    for replace, field in [
        (cards_pb2.ReplaceCardRequest(card_number=wrong), "card_number"),
        (cards_pb2.ReplaceCardRequest(card_number=made.first_number), "new_card_number"),
        (
            cards_pb2.ReplaceCardRequest(card_number=made.first_number, new_card_number=wrong),
            "new_card_number",
        ),
        (
            cards_pb2.ReplaceCardRequest(
                card_number=made.first_number, new_card_number=made.first_number
            ),
            "new_card_number",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub(server).ReplaceCard(replace)
        assert failure(bad.value).field == field
    assert pg_rows(server, "SELECT DISTINCT state FROM cards") == [("ISSUED",)]
