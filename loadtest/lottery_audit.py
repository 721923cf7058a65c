"""The lottery profile's audit (loadtest/lottery.py), run with traffic stopped and every
held draw settled:

- every prize: awarded <= stock, and awarded = the draws that won it; a GOOD prize's
  redemptions (its prize campaign's) = its draws, each draw naming its redemption;
- every draw's points spent exactly once: one 'redeem' ledger entry per draw, reference
  'lottery_draw:<id>', amount -cost, lots taken for exactly the cost; no such entry
  without its draw; the sum of the draws' costs = the points those entries spent;
- every OK the Locust users recorded is a draw in PostgreSQL with the same id, member, key
  and prize;
- Redis: no draw left held, and each prize's stock there = PostgreSQL's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from lottery.gate import LotteryKeys


@dataclass
class LotteryAudit:
    violations: list[str] = field(default_factory=list)
    draws: int = 0
    recorded: int = 0
    prizes: list[tuple[str, int | None, int]] = field(default_factory=list)  # name, stock, awarded

    @property
    def ok(self) -> bool:
        return not self.violations


def audit(database_url: str, redis_url: str, lottery_id: str, records: Path) -> LotteryAudit:
    report = LotteryAudit()
    bad = report.violations.append
    with psycopg.connect(database_url) as conn:
        prizes = conn.execute(
            "SELECT p.id::text, p.position, p.name, p.stock, p.awarded, p.campaign_id::text, "
            "(SELECT count(*) FROM lottery_draws d WHERE d.prize_id = p.id), "
            "(SELECT count(*) FROM lottery_draws d WHERE d.prize_id = p.id "
            " AND d.redemption_id IS NOT NULL), "
            "(SELECT count(*) FROM redemptions r WHERE r.campaign_id = p.campaign_id) "
            "FROM lottery_prizes p WHERE p.lottery_id = %s ORDER BY p.position",
            (lottery_id,),
        ).fetchall()
        for _pid, _, name, stock, awarded, campaign, won, with_redemption, redemptions in prizes:
            report.prizes.append((name, stock, awarded))
            if stock is not None and awarded > stock:
                bad(f"prize {name}: awarded {awarded} > stock {stock}")
            if awarded != won:
                bad(f"prize {name}: awarded {awarded}, but {won} draws won it")
            if campaign is not None and not (with_redemption == redemptions == won):
                bad(
                    f"prize {name}: {won} draws, {with_redemption} naming a redemption, "
                    f"{redemptions} redemptions of its campaign"
                )
        report.draws, cost_total = conn.execute(
            "SELECT count(*), coalesce(sum(cost_points), 0) FROM lottery_draws "
            "WHERE lottery_id = %s",
            (lottery_id,),
        ).fetchone() or (0, 0)
        not_once = conn.execute(
            "SELECT d.id::text, count(e.*), coalesce(sum(e.amount), 0), "
            "(SELECT coalesce(sum(s.points), 0) FROM lot_spends s "
            " WHERE s.reference = 'lottery_draw:' || d.id) "
            "FROM lottery_draws d LEFT JOIN ledger_entries e "
            "ON e.reference = 'lottery_draw:' || d.id AND e.kind = 'redeem' "
            "WHERE d.lottery_id = %s GROUP BY d.id, d.cost_points "
            "HAVING count(e.*) <> 1 OR coalesce(sum(e.amount), 0) <> -d.cost_points "
            "OR (SELECT coalesce(sum(s.points), 0) FROM lot_spends s "
            "    WHERE s.reference = 'lottery_draw:' || d.id) <> d.cost_points "
            "LIMIT 20",
            (lottery_id,),
        ).fetchall()
        for draw_id, entries, amount, lots in not_once:
            bad(f"draw {draw_id}: {entries} ledger entries for {amount} points, lots {lots}")
        orphans = conn.execute(
            "SELECT count(*) FROM ledger_entries e WHERE e.reference LIKE 'lottery_draw:%%' "
            "AND NOT EXISTS (SELECT 1 FROM lottery_draws d "
            "                WHERE 'lottery_draw:' || d.id = e.reference)"
        ).fetchone()
        if orphans and orphans[0]:
            bad(f"{orphans[0]} 'lottery_draw:' ledger entries without their draw")
        spent = conn.execute(
            "SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e "
            "JOIN lottery_draws d ON e.reference = 'lottery_draw:' || d.id "
            "WHERE d.lottery_id = %s",
            (lottery_id,),
        ).fetchone()
        if spent is None or spent[0] != cost_total:
            bad(f"draws cost {cost_total} points, their ledger entries spent {spent}")
        recorded = _recorded(records)
        report.recorded = len(recorded)
        for r in recorded:
            row = conn.execute(
                "SELECT member_id::text, idempotency_key, prize_id::text FROM lottery_draws "
                "WHERE id = %s",
                (r["draw_id"],),
            ).fetchone()
            if row is None:
                bad(f"an OK draw {r['draw_id']} is not in PostgreSQL")
            elif row != (r["member_id"], r["idempotency_key"], r["prize_id"]):
                bad(f"draw {r['draw_id']}: PostgreSQL has {row}, the OK said {r}")
    keys = LotteryKeys(lottery_id)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        held = client.zcard(keys.deadlines)
        if held:
            bad(f"{held} draws still held in Redis after the settle")
        for _, position, name, stock, awarded, *_ in prizes:
            left = _text(client.hget(keys.state, f"left{position + 1}"))
            if stock is not None and left is not None and int(left) != stock - awarded:
                bad(f"prize {name}: Redis has {left} left, PostgreSQL {stock - awarded}")
    finally:
        client.close()
    return report


def _recorded(folder: Path) -> list[dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                found[record["draw_id"]] = record
    return list(found.values())


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
