"""The request fingerprint is stored with every redemption and compared on every retry, so
its bytes must never change: the fast path must equal the original json.dumps form."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import asdict

from flashsale.idempotency import fingerprint
from flashsale.model import Address


def _original(member_id: str, campaign_id: str, quantity: int, address: Address | None) -> str:
    body = json.dumps(
        [member_id, campaign_id, quantity, asdict(address) if address else None], sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def test_fast_fingerprint_equals_the_stored_form() -> None:
    rng = random.Random(7)
    for _ in range(500):
        member, campaign = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.uuid4())
        quantity = rng.randint(1, 1000)
        assert fingerprint(member, campaign, quantity, None) == _original(
            member, campaign, quantity, None
        )
    address = Address("Ada", "1 Main St", "", "Springfield", "", "12345", "US", "")
    assert fingerprint(member, campaign, 2, address) == _original(member, campaign, 2, address)


def test_fingerprint_tells_requests_apart() -> None:
    m, c = str(uuid.uuid4()), str(uuid.uuid4())
    prints = {fingerprint(m, c, 1, None), fingerprint(m, c, 2, None), fingerprint(c, m, 1, None)}
    assert len(prints) == 3
