"""Members and their points: the ledger in PostgreSQL, mirrored into the Redis gate on every
change.

The ledger is append-only: a member's points_balance always equals the sum of the member's
ledger entries and the sum of what remains of the member's lots; points_debt equals the sum
of the entries' debt changes. Every change writes its entries in the same transaction,
under the member's row lock, and every balance change bumps members.version and is
mirrored into Redis (PointsGate.settle) right after the transaction commits.

The rules (earning and rounding, lots and expiry, transfers, reversals and debt, tiers, the
redemption threshold, freezes) are written out in README.md, "Points ledger". One module
per concern, shared values in model.py, SQL steps in store.py: docs/design.md, "Module map".
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from points.context import Context
from points.corrections import Corrections
from points.earn_rules import EarnRules
from points.earning import Earning
from points.expiry import Expiry
from points.gate import PointsGate
from points.members import Members
from points.pending import Pending
from points.program import Program
from points.statements import Statements
from points.tiers import Tiers
from points.transfers import Transfers


class PointsLedger:
    """Every use case of the ledger on one Context: the object the server builds and holds."""

    def __init__(
        self, pool: AsyncConnectionPool, gate: PointsGate, *, program: Program | None = None
    ) -> None:
        self.context = Context(pool, gate, program or Program())
        self.members = Members(self.context)
        self.earning = Earning(self.context, self.members)
        self.corrections = Corrections(self.context, self.members)
        self.transfers = Transfers(self.context, self.members)
        self.tiers = Tiers(self.context)
        self.expiry = Expiry(self.context)
        self.statements = Statements(self.context)
        self.earn_rules = EarnRules(pool, self.context.program)
        self.pending = Pending(self.context, self.earning)

    @property
    def program(self) -> Program:
        return self.context.program
