"""What the benchmark runs: the two profiles, the data set, and the loads built on it.

The data set is made through the domain objects of server.app.App (the same code paths the
operator API runs: items, campaigns, members, earning), once for Surge and once, identical,
for the naive peer's database, so both answer the same requests over the same rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bench.loadgen import LoadSpec
from flashsale.model import RedeemRequest
from inventory.items import ItemKind
from loadtest import credentials
from server.app import App, Stores
from server.config import Settings

T = TypeVar("T")

RICH_POINTS = 10**9  # no success-path member runs out within a run
SUCCESS_PRICE = 10
HOT_PRICE = 100
SUCCESS_UNITS = 10**6  # per success-path campaign: never sold out within a run
SUCCESS_LIMIT = 10**6
MIX_WARM_LIMIT = 100  # per member, per warm campaign of the mix (never reached in a run)
MIX_HOT_LIMIT = 1  # one unit of the hot item per member, as a flash sale sells it


@dataclass(frozen=True)
class Profile:
    name: str
    client_processes: int  # load generator processes
    concurrency: int  # workers for floor, success path and refusals (same for all)
    hot_concurrency: int  # workers for the hot item ("hundreds of clients")
    warmup_s: float  # per steady load: calls made, not recorded
    floor_s: float
    redeem_s: float
    refusal_s: float
    hot_stock: int  # units of the hot item
    hot_beyond_s: float  # keep calling this long after the first SOLD_OUT
    hot_max_s: float  # hard bound of a hot run
    campaigns: int  # success-path campaigns
    members: int  # members with ample points
    poor_members: int  # members with no points (insufficient-points refusals)
    naive_floor: bool  # also measure the floor of the naive peer's server
    # The flash-sale mix: a sale opens on one hot campaign with few units and warm ones,
    # many workers, most calls on the hot one, and runs on well past its sell-out.
    mix_concurrency: int
    mix_hot_stock: int
    mix_warm_campaigns: int
    mix_hot_share: float
    mix_s: float


QUICK = Profile(
    name="quick",
    client_processes=2,
    concurrency=64,
    hot_concurrency=200,
    warmup_s=1.0,
    floor_s=4.0,
    redeem_s=5.0,
    refusal_s=3.0,
    hot_stock=3_000,
    hot_beyond_s=2.0,
    hot_max_s=12.0,
    campaigns=20,
    members=1_000,
    poor_members=200,
    naive_floor=True,
    mix_concurrency=200,
    mix_hot_stock=300,
    mix_warm_campaigns=20,
    mix_hot_share=0.8,
    mix_s=8.0,
)

FULL = Profile(
    name="full",
    client_processes=2,
    concurrency=64,
    hot_concurrency=500,
    warmup_s=3.0,
    floor_s=20.0,
    redeem_s=30.0,
    refusal_s=20.0,
    hot_stock=30_000,
    hot_beyond_s=10.0,
    hot_max_s=180.0,
    campaigns=50,
    members=5_000,
    poor_members=500,
    naive_floor=True,
    mix_concurrency=500,
    mix_hot_stock=1_000,
    mix_warm_campaigns=20,
    mix_hot_share=0.8,
    mix_s=30.0,
)

PROFILES = {p.name: p for p in (QUICK, FULL)}


@dataclass(frozen=True)
class Dataset:
    """Ids in one database: Surge's or the naive peer's."""

    success_campaigns: tuple[str, ...]
    hot_campaign: str
    sold_out_campaign: str
    members: tuple[str, ...]
    poor_members: tuple[str, ...]
    mix_hot_campaign: str
    mix_warm_campaigns: tuple[str, ...]


async def _bounded(calls: Iterable[Awaitable[T]], width: int = 32) -> list[T]:
    """Runs the calls with at most `width` in flight (the pool has 10 connections)."""
    gate = asyncio.Semaphore(width)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def make_campaign(
    app: App, sku: str, units: int, price: int, limit: int, starts: datetime, ends: datetime
) -> tuple[str, str]:
    """A virtual item with `units` and its flash sale, through the domain objects (the
    operator API's paths); returns (item id, campaign id)."""
    item = await app.catalog.create_item(
        sku=sku, name="Bench lucky bag", kind=ItemKind.VIRTUAL, initial_stock=units
    )
    created = await app.campaigns.create(
        item_id=item.id,
        name="Bench flash sale",
        units_allotted=units,
        points_price=price,
        cash_price_cents=0,
        per_member_limit=limit,
        starts_at=starts,
        ends_at=ends,
    )
    return item.id, created.meta.id


async def seed(stores: Stores, profile: Profile) -> Dataset:
    """Creates the data set through the domain objects; returns its ids."""
    settings = Settings(grpc_address="127.0.0.1:0", pg_pool_min=2, pg_pool_max=10)
    app = App(settings, stores)
    await app.pool.open(wait=True, timeout=30)
    # As App.start does: the scripts on every primary before the first concurrent call.
    await app.campaign_gate.load_scripts()
    await app.points_gate.load_scripts()
    app.committer.start()
    try:
        starts = datetime.now(UTC) - timedelta(minutes=1)
        ends = starts + timedelta(days=1)

        async def campaign(units: int, price: int, limit: int) -> str:
            sku = "bench-" + uuid.uuid4().hex[:16]
            return (await make_campaign(app, sku, units, price, limit, starts, ends))[1]

        async def member(points: int) -> str:
            created = await app.points.members.create(
                display_name="Bench member", external_ref=None
            )
            if points:
                await app.points.earning.earn(
                    member_id=created.id,
                    points=points,
                    reason="bench seed",
                    idempotency_key="seed-" + created.id,
                )
            return created.id

        success = await _bounded(
            campaign(SUCCESS_UNITS, SUCCESS_PRICE, SUCCESS_LIMIT) for _ in range(profile.campaigns)
        )
        hot = await campaign(profile.hot_stock, HOT_PRICE, 100)
        # A high limit: the one buyer may come back and must hear SOLD_OUT, not LIMIT_EXCEEDED.
        sold_out = await campaign(1, SUCCESS_PRICE, 100)
        mix_hot = await campaign(profile.mix_hot_stock, HOT_PRICE, MIX_HOT_LIMIT)
        mix_warm = await _bounded(
            campaign(SUCCESS_UNITS, SUCCESS_PRICE, MIX_WARM_LIMIT)
            for _ in range(profile.mix_warm_campaigns)
        )
        members = await _bounded(member(RICH_POINTS) for _ in range(profile.members))
        poor = await _bounded(member(0) for _ in range(profile.poor_members))
        # The one unit of the sold-out campaign goes at once, through the real flow.
        await app.admission.redeem(
            RedeemRequest(
                member_id=members[0], campaign_id=sold_out, quantity=1, idempotency_key="sell-1"
            )
        )
        return Dataset(
            tuple(success), hot, sold_out, tuple(members), tuple(poor), mix_hot, tuple(mix_warm)
        )
    finally:
        await app.committer.close()
        await app.redis.aclose()
        await app.pool.close()


@dataclass(frozen=True)
class Load:
    """A load to run, and what it measures."""

    key: str  # floor, redeem, hot, refusal_sold_out, refusal_points, floor_mix, mix
    system: str  # surge, naive or bare
    spec: LoadSpec


def loads(
    profile: Profile,
    *,
    surge: str,
    naive: str,
    bare: str,
    surge_data: Dataset,
    naive_data: Dataset,
) -> list[Load]:
    """Every load of a run, in the order they run. `surge` / `naive` / `bare`: host:port."""
    credential = credentials.metadata()  # SURGE_TOKEN, which bench.run sets

    def floor(target: str) -> LoadSpec:
        return LoadSpec(
            name="floor",
            metadata=credential,
            target=target,
            call="health",
            concurrency=profile.concurrency,
            warmup_s=profile.warmup_s,
            duration_s=profile.floor_s,
        )

    def redeem(target: str, data: Dataset, prefix: str) -> LoadSpec:
        return LoadSpec(
            name="redeem",
            metadata=credential,
            target=target,
            call="redeem",
            duration_s=profile.redeem_s,
            campaign_ids=data.success_campaigns,
            member_ids=data.members,
            key_prefix=prefix,
            concurrency=profile.concurrency,
            warmup_s=profile.warmup_s,
        )

    def hot(target: str, data: Dataset, prefix: str) -> LoadSpec:
        return LoadSpec(
            name="hot",
            metadata=credential,
            target=target,
            call="redeem",
            concurrency=profile.hot_concurrency,
            duration_s=profile.hot_max_s,
            campaign_ids=(data.hot_campaign,),
            member_ids=data.members,
            stop_after_sold_out_s=profile.hot_beyond_s,
            key_prefix=prefix,
        )

    def mix(target: str, data: Dataset) -> LoadSpec:
        return LoadSpec(
            name="mix",
            metadata=credential,
            target=target,
            call="redeem",
            concurrency=profile.mix_concurrency,
            duration_s=profile.mix_s,  # no warm-up: the sale opens as the load starts
            campaign_ids=data.mix_warm_campaigns,
            hot_campaign=data.mix_hot_campaign,
            hot_share=profile.mix_hot_share,
            member_ids=data.members,
            key_prefix="surge-mix",
        )

    surge_redeem = redeem(surge, surge_data, "surge-redeem")
    # The bare floor first, then Surge's, back to back: the edge's cost is their difference.
    result = [Load("floor", "bare", floor(bare)), Load("floor", "surge", floor(surge))]
    if profile.naive_floor:
        result.append(Load("floor", "naive", replace(floor(naive), duration_s=profile.floor_s / 2)))
    result += [
        Load("redeem", "surge", surge_redeem),
        Load("redeem", "naive", redeem(naive, naive_data, "naive-redeem")),
        Load(
            "refusal_sold_out",
            "surge",
            replace(
                surge_redeem,
                name="refusal_sold_out",
                duration_s=profile.refusal_s,
                campaign_ids=(surge_data.sold_out_campaign,),
                key_prefix="surge-soldout",
            ),
        ),
        Load(
            "refusal_points",
            "surge",
            replace(
                surge_redeem,
                name="refusal_points",
                duration_s=profile.refusal_s,
                member_ids=surge_data.poor_members,
                key_prefix="surge-poor",
            ),
        ),
        Load("hot", "surge", hot(surge, surge_data, "surge-hot")),
        Load("hot", "naive", hot(naive, naive_data, "naive-hot")),
        # The mix against the bare floor at the mix's own concurrency (latency grows with
        # the calls in flight), measured right before it.
        Load(
            "floor_mix",
            "bare",
            replace(floor(bare), name="floor_mix", concurrency=profile.mix_concurrency),
        ),
        Load("mix", "surge", mix(surge, surge_data)),
    ]
    return result
