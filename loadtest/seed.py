"""Seeds a sale through the public API and writes what the Locust users need to a JSON file.

Everything is created fresh per run (SKUs and member refs carry the run id), so the load
test can run again and again against the same database, and against any deployment: it
only uses the operator services a real back office would. Members come first (the slow
part); campaigns last, so that their opening time can be set relative to the moment the
load starts.

    python -m loadtest.seed --host 127.0.0.1:50051 --profile ci --opens-in 15 --out seed.json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from loadtest.credentials import authorised
from loadtest.profiles import CampaignSpec, Profile, get
from loyalty.v1 import (
    campaign_pb2,
    campaign_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    member_pb2,
    member_pb2_grpc,
)

RPC_TIMEOUT_S = 10.0
SEED_THREADS = 16
_KINDS = {
    "PHYSICAL": common_pb2.ITEM_KIND_PHYSICAL,
    "VIRTUAL": common_pb2.ITEM_KIND_VIRTUAL,
    "SERVICE": common_pb2.ITEM_KIND_SERVICE,
}


@dataclass(frozen=True)
class SeededCampaign:
    id: str
    key: str
    kind: str
    units: int
    points_price: int
    cash_price_cents: int
    per_member_limit: int
    weight: int


@dataclass(frozen=True)
class SeededMember:
    id: str
    points: int


@dataclass(frozen=True)
class Seed:
    run_id: str
    profile: str
    opens_at: float  # epoch seconds: the sale's starts_at
    campaigns: tuple[SeededCampaign, ...]
    members: tuple[SeededMember, ...]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))


def load_seed(path: Path) -> Seed:
    data = json.loads(path.read_text())
    return Seed(
        run_id=data["run_id"],
        profile=data["profile"],
        opens_at=float(data["opens_at"]),
        campaigns=tuple(SeededCampaign(**c) for c in data["campaigns"]),
        members=tuple(SeededMember(**m) for m in data["members"]),
    )


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def seed(host: str, profile: Profile, *, opens_in_s: float, run_id: str | None = None) -> Seed:
    """Creates members (most with plenty of points, some with too few), then the campaigns,
    opening `opens_in_s` seconds after they are created."""
    run_id = run_id or new_run_id()
    with grpc.insecure_channel(host) as plain:
        grpc.channel_ready_future(plain).result(timeout=RPC_TIMEOUT_S)
        channel = authorised(plain)
        members = _members(member_pb2_grpc.MemberServiceStub(channel), profile, run_id)
        opens_at = time.time() + opens_in_s
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        campaigns = campaign_pb2_grpc.CampaignServiceStub(channel)
        created = tuple(
            _campaign(catalog, campaigns, spec, run_id, opens_at, profile.sale_s)
            for spec in profile.campaigns
        )
    return Seed(run_id, profile.name, opens_at, created, members)


def _members(
    stub: member_pb2_grpc.MemberServiceStub, profile: Profile, run_id: str
) -> tuple[SeededMember, ...]:
    poor = int(profile.members * profile.poor_fraction)

    def one(i: int) -> SeededMember:
        points = profile.poor_points if i < poor else profile.rich_points
        member = stub.CreateMember(
            member_pb2.CreateMemberRequest(
                display_name=f"Shopper {i}", external_ref=f"lt-{run_id}-{i}"
            ),
            timeout=RPC_TIMEOUT_S,
        )
        stub.EarnPoints(
            member_pb2.EarnPointsRequest(
                member_id=member.id,
                points=points,
                reason="load test: holiday bonus",
                idempotency_key=f"seed-{run_id}",
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return SeededMember(member.id, points)

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        return tuple(pool.map(one, range(profile.members)))


def _campaign(
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    campaigns: campaign_pb2_grpc.CampaignServiceStub,
    spec: CampaignSpec,
    run_id: str,
    opens_at: float,
    sale_s: float,
) -> SeededCampaign:
    item = catalog.CreateItem(
        catalog_pb2.CreateItemRequest(
            sku=f"lt-{run_id}-{spec.key}",
            name=spec.name,
            kind=_KINDS[spec.kind],
            initial_stock=spec.units,
        ),
        timeout=RPC_TIMEOUT_S,
    )
    created = campaigns.CreateCampaign(
        campaign_pb2.CreateCampaignRequest(
            item_id=item.id,
            name=f"{spec.name} ({run_id})",
            units_allotted=spec.units,
            points_price=spec.points_price,
            cash_price_cents=spec.cash_price_cents,
            per_member_limit=spec.per_member_limit,
            starts_at=timestamp(opens_at),
            # An hour past the last stage: retries after the run still find it open.
            ends_at=timestamp(opens_at + sale_s + 3600),
        ),
        timeout=RPC_TIMEOUT_S,
    )
    return SeededCampaign(
        created.id,
        spec.key,
        spec.kind,
        spec.units,
        spec.points_price,
        spec.cash_price_cents,
        spec.per_member_limit,
        spec.weight,
    )


def timestamp(epoch_s: float) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(datetime.fromtimestamp(epoch_s, UTC))
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.seed", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1:50051", help="gRPC address of Surge")
    parser.add_argument("--profile", default="ci", help="ci or surge")
    parser.add_argument("--opens-in", type=float, default=30.0, help="seconds to the opening")
    parser.add_argument("--out", type=Path, required=True, help="where to write the seed JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = seed(args.host, get(args.profile), opens_in_s=args.opens_in)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.write(args.out)
    print(
        f"seeded run {result.run_id}: {len(result.members)} members, "
        f"{len(result.campaigns)} campaigns in {time.monotonic() - started:.1f}s; "
        f"the sale opens at {datetime.fromtimestamp(result.opens_at, UTC):%H:%M:%S} UTC"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
