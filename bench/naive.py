"""The naive peer: Redeem the way most teams would write it first, PostgreSQL only.

One transaction per request on the same schema (server/migrations/0001_schema.sql), in the
same lock order as Surge (campaign row, then member row):

    BEGIN
    SELECT campaign ... FOR UPDATE          -- window, stock, price, limit
    SELECT member ... FOR UPDATE            -- frozen, points
    SELECT redemption by (member, key)      -- idempotency: replay or key reused
    SELECT campaign_members                 -- units the member already has
    INSERT redemption
    UPDATE campaigns (units), UPDATE members (points) RETURNING balance
    INSERT ledger entry
    INSERT ... ON CONFLICT campaign_members (per-member units)
    COMMIT

It checks the same rules, writes the same rows, bumps the same versions and answers with the
same messages and errors (the domain errors, mapped by the same ErrorInterceptor), behind
the same kind of grpc.aio server with the same edge (server.interceptors: request id, error
mapping, gRPC metrics, access log, configured from the same SURGE_* variables as Surge) and
the same health service. What it does not do:
remember refusals (Surge keeps them in Redis for the idempotency TTL) — less work, so the
comparison, if anything, flatters the peer.

Run: python -m bench.naive --address 127.0.0.1:PORT --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from common import validation
from common.errors import (
    CampaignNotActive,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidArgument,
    LimitExceeded,
    MemberFrozen,
    NotFound,
    SoldOut,
)
from common.metrics import Metrics
from flashsale import idempotency
from flashsale.model import (
    MAX_QUANTITY,
    Redeemed,
    RedeemRequest,
    Redemption,
    RedemptionStatus,
    new_redemption_code,
)
from flashsale.store import redemption_from_row
from inventory.items import ItemKind
from loyalty.v1 import redemption_pb2_grpc
from server.config import Settings
from server.credentials import Verifier
from server.interceptors import EdgeInterceptor
from server.logs import setup_logging
from server.services.redemption import RedemptionService

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger("bench.naive")

_SAVED = (
    "SELECT r.id::text, r.member_id::text, r.campaign_id::text, c.item_id::text, r.quantity, "
    "r.points_total, r.cash_total_cents, r.status, r.redemption_code, r.shipping_address, "
    "r.idempotency_key, r.request_hash, r.created_at, r.updated_at, r.payment_due_at, "
    "r.payment_reference FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id "
    "WHERE r.member_id = %s AND r.idempotency_key = %s"
)


class NaiveRedemptions:
    def __init__(self, pool: AsyncConnectionPool, *, payment_window_s: float = 900.0) -> None:
        self._pool = pool
        self._payment_window = timedelta(seconds=payment_window_s)

    async def redeem(self, request: RedeemRequest) -> Redeemed:
        member_id = validation.uuid_id("member_id", request.member_id)
        campaign_id = validation.uuid_id("campaign_id", request.campaign_id)
        quantity = validation.int_range(
            "quantity", request.quantity, minimum=1, maximum=MAX_QUANTITY
        )
        key = validation.idempotency_key("idempotency_key", request.idempotency_key)
        async with self._pool.connection() as conn, conn.transaction():
            return await self._redeem(conn, request, member_id, campaign_id, quantity, key)

    async def _redeem(
        self,
        conn: AsyncConnection[Any],
        request: RedeemRequest,
        member_id: str,
        campaign_id: str,
        quantity: int,
        key: str,
    ) -> Redeemed:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT c.id::text, c.item_id::text, i.kind AS item_kind, c.units_allotted, "
            "c.units_committed, c.units_held, c.points_price, c.cash_price_cents, "
            "c.per_member_limit, c.starts_at, c.ends_at FROM campaigns c "
            "JOIN items i ON i.id = c.item_id WHERE c.id = %s FOR UPDATE OF c",
            (campaign_id,),
        )
        campaign = await cur.fetchone()
        if campaign is None:
            raise NotFound("campaign", campaign_id)
        kind = ItemKind(campaign["item_kind"])
        address = None
        if kind is ItemKind.PHYSICAL:
            if request.shipping_address is None:
                raise InvalidArgument("shipping_address", "is required for a physical item")
            address = request.shipping_address.validated()
        fingerprint = idempotency.fingerprint(member_id, campaign_id, quantity, address)

        await cur.execute(
            "SELECT points_balance, points_held, frozen FROM members WHERE id = %s FOR UPDATE",
            (member_id,),
        )
        member = await cur.fetchone()
        if member is None:
            raise NotFound("member", member_id)

        await cur.execute(_SAVED, (member_id, key))
        saved = await cur.fetchone()
        if saved is not None:
            if saved["request_hash"] != fingerprint:
                raise IdempotencyKeyReused(key)
            return Redeemed(redemption_from_row(saved), replayed=True)

        now = datetime.now(UTC)
        if not campaign["starts_at"] <= now < campaign["ends_at"]:
            raise CampaignNotActive(
                campaign_id, campaign["starts_at"].isoformat(), campaign["ends_at"].isoformat()
            )
        if member["frozen"]:
            raise MemberFrozen(member_id)
        remaining = (
            campaign["units_allotted"] - campaign["units_committed"] - campaign["units_held"]
        )
        if remaining < quantity:
            raise SoldOut(campaign_id, remaining)
        await cur.execute(
            "SELECT units_taken FROM campaign_members WHERE campaign_id = %s AND member_id = %s",
            (campaign_id, member_id),
        )
        row = await cur.fetchone()
        taken = row["units_taken"] if row else 0
        if taken + quantity > campaign["per_member_limit"]:
            raise LimitExceeded(campaign_id, campaign["per_member_limit"], taken)
        points = campaign["points_price"] * quantity
        available = member["points_balance"] - member["points_held"]
        if available < points:
            raise InsufficientPoints(member_id, available, points)

        redemption_id = str(uuid.uuid4())
        pending = campaign["cash_price_cents"] > 0
        payment_due = now + self._payment_window if pending else None
        code = new_redemption_code() if kind is ItemKind.VIRTUAL and not pending else None
        status = RedemptionStatus.PENDING_PAYMENT if pending else RedemptionStatus.COMMITTED
        cash = campaign["cash_price_cents"] * quantity
        await cur.execute(
            "INSERT INTO redemptions (id, member_id, campaign_id, quantity, points_total, "
            "cash_total_cents, status, idempotency_key, request_hash, shipping_address, "
            "redemption_code, payment_due_at, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                redemption_id,
                member_id,
                campaign_id,
                quantity,
                points,
                cash,
                status.value,
                key,
                fingerprint,
                Jsonb(asdict(address)) if address else None,
                code,
                payment_due,
                now,
                now,
            ),
        )
        if pending:
            await cur.execute(
                "UPDATE campaigns SET units_held = units_held + %s, version = version + 1 "
                "WHERE id = %s",
                (quantity, campaign_id),
            )
            await cur.execute(
                "UPDATE members SET points_held = points_held + %s, version = version + 1 "
                "WHERE id = %s",
                (points, member_id),
            )
        else:
            await cur.execute(
                "UPDATE campaigns SET units_committed = units_committed + %s, "
                "version = version + 1 WHERE id = %s",
                (quantity, campaign_id),
            )
            if points > 0:
                await cur.execute(
                    "UPDATE members SET points_balance = points_balance - %s, "
                    "version = version + 1 WHERE id = %s RETURNING points_balance",
                    (points, member_id),
                )
                balance = await cur.fetchone()
                assert balance is not None
                await cur.execute(
                    "INSERT INTO ledger_entries (member_id, kind, amount, balance_after, "
                    "reference, reason) VALUES (%s, 'redeem', %s, %s, %s, %s)",
                    (
                        member_id,
                        -points,
                        balance["points_balance"],
                        f"redemption:{redemption_id}",
                        "flash-sale redemption",
                    ),
                )
        await cur.execute(
            "INSERT INTO campaign_members AS cm (campaign_id, member_id, units_taken, unit_limit) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (campaign_id, member_id) "
            "DO UPDATE SET units_taken = cm.units_taken + EXCLUDED.units_taken, "
            "version = cm.version + 1",
            (campaign_id, member_id, quantity, campaign["per_member_limit"]),
        )
        return Redeemed(
            Redemption(
                id=redemption_id,
                member_id=member_id,
                campaign_id=campaign_id,
                item_id=campaign["item_id"],
                quantity=quantity,
                points_total=points,
                cash_total_cents=cash,
                status=status,
                redemption_code=code,
                shipping_address=address,
                idempotency_key=key,
                created_at=now,
                updated_at=now,
                payment_due_at=payment_due,
                payment_reference=None,
            ),
            replayed=False,
        )


class NaiveRedemptionService(RedemptionService):
    """Redeem exactly as Surge's servicer converts it (inherited), on the naive domain
    object; the other methods answer UNIMPLEMENTED."""

    def __init__(self, redemptions: NaiveRedemptions) -> None:
        self._admission = redemptions  # type: ignore[assignment]  # same redeem() contract

    async def _unimplemented(self, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the naive peer only has Redeem")

    async def GetRedemption(self, request: Any, context: Context) -> Any:
        return await self._unimplemented(context)

    async def CancelRedemption(self, request: Any, context: Context) -> Any:
        return await self._unimplemented(context)

    async def ConfirmPayment(self, request: Any, context: Context) -> Any:
        return await self._unimplemented(context)

    async def ListRedemptions(self, request: Any, context: Context) -> Any:
        return await self._unimplemented(context)

    async def GetBalance(self, request: Any, context: Context) -> Any:
        return await self._unimplemented(context)


def edge(settings: Settings) -> grpc.aio.ServerInterceptor:
    """The interceptor Surge's server.app.App puts in front of every call, built the same way
    (checking the same credentials when the bench gives it Surge's secret)."""
    checks = settings.auth == "JWT" and settings.has_jwt_keys
    return EdgeInterceptor(
        Metrics(CollectorRegistry(auto_describe=True)),
        access_log=settings.access_log,
        verifier=Verifier(settings.jwt_keys()) if checks else None,
    )


async def serve(address: str, database_url: str, settings: Settings) -> None:
    """Serves until SIGTERM / SIGINT, then drains like Surge does. Pool sizes, grace period,
    logging and the access log come from the same settings as Surge's."""
    pool = AsyncConnectionPool(
        database_url,
        min_size=settings.pg_pool_min,
        max_size=settings.pg_pool_max,
        kwargs={"autocommit": True},
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    server = grpc.aio.server(interceptors=[edge(settings)])
    redemption_pb2_grpc.add_RedemptionServiceServicer_to_server(
        NaiveRedemptionService(NaiveRedemptions(pool)), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("naive peer serving on %s (port %d)", address, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.shutdown_grace_seconds)
    await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--address", required=True, help="host:port to listen on (loopback)")
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args(argv)
    settings = Settings.load()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    asyncio.run(serve(args.address, args.database_url, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
