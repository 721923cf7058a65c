"""Load-test profiles: what is on sale, who shops, and the shape of the surge.

A profile is plain data so that the seeder, the Locust users, the LoadTestShape and the
orchestrator all read one definition. Stage times are seconds relative to the moment the
sale opens (negative: before it), because a flash sale is anchored to a wall-clock opening,
not to when the load generator happened to start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """Until `until_s` (relative to the sale opening) run `users` users, changing the user
    count by `spawn_rate` per second."""

    name: str
    until_s: float
    users: int
    spawn_rate: float


@dataclass(frozen=True)
class CampaignSpec:
    """One campaign of the sale. `weight` is its share of redemption attempts."""

    key: str
    name: str
    kind: str  # "PHYSICAL" | "VIRTUAL" | "SERVICE"
    units: int
    points_price: int
    cash_price_cents: int
    per_member_limit: int
    weight: int


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    members: int
    poor_fraction: float  # members seeded with fewer points than the cheapest item
    rich_points: int
    poor_points: int
    campaigns: tuple[CampaignSpec, ...]
    stages: tuple[Stage, ...]
    # Seconds of quiet browsing between Locust's start and the sale opening.
    browse_s: float
    # Users present this long before the opening wait at the start gate, then all go at once.
    gate_s: float
    think_s: tuple[float, float]
    # Chaos variant: SIGKILL the server this long after the opening, restart it after down_s.
    chaos_kill_at_s: float
    chaos_down_s: float

    @property
    def sale_s(self) -> float:
        """From the opening to the end of the last stage."""
        return self.stages[-1].until_s

    def tick(self, since_open_s: float) -> tuple[int, float] | None:
        """The LoadTestShape's answer at `since_open_s`: (users, spawn rate), None = stop."""
        for stage in self.stages:
            if since_open_s < stage.until_s:
                return stage.users, stage.spawn_rate
        return None

    def stage_at(self, since_open_s: float) -> str:
        for stage in self.stages:
            if since_open_s < stage.until_s:
                return stage.name
        return "over"


def _campaigns(hot_units: int, scale: int) -> tuple[CampaignSpec, ...]:
    """The same sale at two sizes: one hot item far below demand, a gift card with more
    stock, a physical item that needs an address, and a points + cash offer."""
    return (
        CampaignSpec("hot", "Holiday lucky bag", "VIRTUAL", hot_units, 500, 0, 2, 45),
        CampaignSpec("card", "Gift card 50", "VIRTUAL", 700 * scale, 200, 0, 3, 25),
        CampaignSpec("kettle", "Travel kettle", "PHYSICAL", 300 * scale, 1_000, 0, 1, 15),
        CampaignSpec("spa", "Spa day, points + cash", "SERVICE", 150 * scale, 300, 1_999, 1, 15),
    )


CI = Profile(
    name="ci",
    description="CI: ~1 minute of traffic on a 2-core machine, one Locust process",
    members=1_500,
    poor_fraction=0.1,
    rich_points=20_000,
    poor_points=150,
    campaigns=_campaigns(hot_units=200, scale=1),
    stages=(
        Stage("browse", -4, 15, 15),
        Stage("gate", 0, 120, 200),
        Stage("spike", 12, 120, 200),
        Stage("plateau", 30, 60, 30),
        Stage("tail", 40, 15, 30),
    ),
    browse_s=8,
    gate_s=4,
    think_s=(0.05, 0.25),
    chaos_kill_at_s=5,
    chaos_down_s=1.0,
)

SURGE = Profile(
    name="surge",
    description="Surge: ~7 minutes, 1000 users at the peak; use several Locust processes",
    members=20_000,
    poor_fraction=0.1,
    rich_points=20_000,
    poor_points=150,
    campaigns=_campaigns(hot_units=200, scale=10),
    stages=(
        Stage("browse", -10, 100, 20),
        Stage("gate", 0, 1_000, 500),
        Stage("spike", 60, 1_000, 500),
        Stage("plateau", 300, 500, 20),
        Stage("tail", 390, 100, 20),
    ),
    browse_s=30,
    gate_s=10,
    think_s=(0.1, 0.5),
    chaos_kill_at_s=20,
    chaos_down_s=2.0,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (CI, SURGE)}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}") from None
