"""cards/numbers.py: the Luhn check digit and the number layout."""

from __future__ import annotations

import pytest

from cards import numbers
from common.errors import InvalidArgument


def test_luhn_matches_known_numbers_and_catches_single_digit_errors() -> None:
    assert numbers.luhn_valid("79927398713")
    assert numbers.luhn_valid("4539578763621486")
    good = numbers.number("88", 123)
    assert good == "8800000000001235"  # 3*2 + 2 + 1*2 + 8 + (8*2 - 9) = 25
    for i in range(len(good)):
        for d in "0123456789":
            if d != good[i]:
                assert not numbers.luhn_valid(good[:i] + d + good[i + 1 :])


def test_parse_names_the_field() -> None:
    for bad in ("", "123", "880000000000123x", "8800000000001236"):
        with pytest.raises(InvalidArgument) as e:
            numbers.parse(bad)
        assert e.value.field == "card_number"
    assert numbers.serial_of("88", numbers.number("88", 99)) == 99
    assert numbers.capacity("12345678") == 10**7
