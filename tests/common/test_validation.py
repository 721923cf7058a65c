"""Pure checks on request fields."""

from __future__ import annotations

import uuid

import pytest

from common import paging, validation
from common.errors import InvalidArgument


@pytest.mark.parametrize("good", ["a", "order-123:retry/1", "k" * 128, "with inner space"])
def test_idempotency_keys_accepted(good: str) -> None:
    assert validation.idempotency_key("idempotency_key", good) == good


@pytest.mark.parametrize("bad", ["", "k" * 129, " lead", "trail ", "tab\tin", "é", "\x7f", "k\n"])
def test_idempotency_keys_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        validation.idempotency_key("idempotency_key", bad)
    assert e.value.field == "idempotency_key"


def test_uuid_ids_are_normalised() -> None:
    raw = uuid.uuid4()
    assert validation.uuid_id("member_id", str(raw).upper()) == str(raw)
    with pytest.raises(InvalidArgument, match="must be a UUID"):
        validation.uuid_id("member_id", "12")
    with pytest.raises(InvalidArgument, match="is required"):
        validation.uuid_id("member_id", "")


def test_text_strips_and_bounds() -> None:
    assert validation.text("name", "  Mug ", max_length=10, required=True) == "Mug"
    with pytest.raises(InvalidArgument):
        validation.text("name", "   ", max_length=10, required=True)
    with pytest.raises(InvalidArgument):
        validation.text("name", "x" * 11, max_length=10, required=False)
    assert validation.text("name", "", max_length=10, required=False) == ""


def test_page_tokens_round_trip_and_reject_forgeries() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    token = paging.encode(moment, "abc")
    assert paging.decode(token) == (moment, "abc")
    assert paging.decode("") is None
    with pytest.raises(InvalidArgument):
        paging.decode("not-a-token")
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        paging.page_size(101)


def test_currencies_are_iso_4217_codes() -> None:
    assert validation.currency("currency", "CNY") == "CNY"
    for bad in ("", "cny", "Cny", "CN", "CNYY", "C1Y", "¥", "CNY\n", " CNY"):
        with pytest.raises(InvalidArgument) as e:
            validation.currency("currency", bad)
        assert e.value.field == "currency", bad


def test_positive_amounts() -> None:
    assert validation.positive("amount_cents", 1) == 1
    for bad in (0, -1):
        with pytest.raises(InvalidArgument, match="is required and must be above 0"):
            validation.positive("amount_cents", bad)
