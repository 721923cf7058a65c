"""Member cards' own errors: subclasses of common.errors, so the gRPC edge maps them as it
maps their parents (server/errors.py). A number that stopped working is refused at once:
the till's ResolveCard reads PostgreSQL, no cache.

Refusal
├── CardLost(card_number), CardReplaced(card_number)   a till's card refused at once
├── CardNotOpened(card_number)
└── CardInvalidTransition(card_number, state, transition)
"""

from __future__ import annotations

from common.errors import Refusal


class CardLost(Refusal):
    """The card was reported lost: refused until it is unlocked or replaced."""

    reason = "CARD_LOST"

    def __init__(self, card_number: str) -> None:
        super().__init__(f"card {card_number} is reported lost")
        self.card_number = card_number

    def metadata(self) -> dict[str, str]:
        return {"card_number": self.card_number}


class CardReplaced(Refusal):
    """The card was replaced by another: it never works again."""

    reason = "CARD_REPLACED"

    def __init__(self, card_number: str) -> None:
        super().__init__(f"card {card_number} was replaced and no longer works")
        self.card_number = card_number

    def metadata(self) -> dict[str, str]:
        return {"card_number": self.card_number}


class CardNotOpened(Refusal):
    """The card was issued but never opened for a member: it names no one yet."""

    reason = "CARD_NOT_OPENED"

    def __init__(self, card_number: str) -> None:
        super().__init__(f"card {card_number} is not opened for a member")
        self.card_number = card_number

    def metadata(self) -> dict[str, str]:
        return {"card_number": self.card_number}


class CardInvalidTransition(Refusal):
    """A card change its state does not allow (open an active card, unlock one not lost)."""

    reason = "CARD_INVALID_TRANSITION"

    def __init__(self, card_number: str, state: str, transition: str) -> None:
        super().__init__(f"card {card_number} is {state}: cannot {transition}")
        self.card_number, self.state, self.transition = card_number, state, transition

    def metadata(self) -> dict[str, str]:
        return {"card_number": self.card_number, "state": self.state, "transition": self.transition}
