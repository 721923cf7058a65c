"""Card numbers, pure: 16 digits = the type's prefix (1-8 digits), the serial zero-padded
to fill 15 digits, then a Luhn check digit (ISO/IEC 7812, as payment cards), which catches
every single mistyped digit and most swaps of two neighbours at a till's keypad."""

from __future__ import annotations

import re

from common.errors import InvalidArgument

LENGTH = 16
MAX_PREFIX_LENGTH = 8
_DIGITS = re.compile(r"[0-9]+")
_PREFIX = re.compile(r"[0-9]{1,8}")


def check_digit(payload: str) -> str:
    """The Luhn digit that makes `payload` + digit valid."""
    total = 0
    # Doubling starts from the rightmost payload digit (the check digit will follow it).
    for i, ch in enumerate(reversed(payload)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return bool(_DIGITS.fullmatch(number)) and check_digit(number[:-1]) == number[-1]


def capacity(prefix: str) -> int:
    """How many serials a type with this prefix can issue."""
    return int(10 ** (LENGTH - 1 - len(prefix)))


def number(prefix: str, serial: int) -> str:
    width = LENGTH - 1 - len(prefix)
    payload = f"{prefix}{serial:0{width}d}"
    return payload + check_digit(payload)


def serial_of(prefix: str, card_number: str) -> int:
    return int(card_number[len(prefix) : LENGTH - 1])


def valid_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise InvalidArgument("prefix", f"must be 1 to {MAX_PREFIX_LENGTH} digits")
    return prefix


def parse(card_number: str, *, field: str = "card_number") -> str:
    """A well-formed card number (16 digits, check digit right), else InvalidArgument."""
    card_number = card_number.strip()
    if not card_number:
        raise InvalidArgument(field, "is required")
    if len(card_number) != LENGTH or not _DIGITS.fullmatch(card_number):
        raise InvalidArgument(field, f"must be {LENGTH} digits")
    if not luhn_valid(card_number):
        raise InvalidArgument(field, "has a wrong check digit")
    return card_number
