"""The ledger's daily aggregates: what budgets and `edge usage` read, at a cost that does
not grow with history.

Each row written to `requests` also adds to three small tables in the same transaction
(so they are exactly as durable as the rows, kill -9 included): `daily` per UTC day,
tier, backend and model (requests, failed, degraded, tokens, cost), `daily_reasons`
(reason codes per day) and `daily_latency` (a histogram per day, 5% wide buckets).
Raw rows past the retention window are deleted; the aggregates stay.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime

from edge.usage import TIER_COLUMNS, DayUsage

__all__ = ["SCHEMA", "day_of", "add", "add_many", "backfill", "day_usage"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS daily (
    day               TEXT    NOT NULL,
    tier              TEXT    NOT NULL,
    backend           TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    failed            INTEGER NOT NULL,
    degraded          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          REAL    NOT NULL,
    PRIMARY KEY (day, tier, backend, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_reasons (
    day  TEXT    NOT NULL,
    code TEXT    NOT NULL,
    n    INTEGER NOT NULL,
    PRIMARY KEY (day, code)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_latency (
    day    TEXT    NOT NULL,
    bucket INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (day, bucket)
) WITHOUT ROWID;
"""

_GROWTH = 1.05  # each latency bucket is 5% wider than the one below: medians to within 2.5%

_ADD_DAILY = """
INSERT INTO daily VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (day, tier, backend, model) DO UPDATE SET
    requests = requests + 1, failed = failed + excluded.failed, degraded = degraded + excluded.degraded,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd
"""
_ADD_REASON = "INSERT INTO daily_reasons VALUES (?, ?, ?) ON CONFLICT (day, code) DO UPDATE SET n = n + excluded.n"
_ADD_LATENCY = "INSERT INTO daily_latency VALUES (?, ?, ?) ON CONFLICT (day, bucket) DO UPDATE SET n = n + excluded.n"


def day_of(ts: float) -> str:
    """The UTC day of a Unix time, as the aggregates key it ('2026-11-29')."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _bucket(latency_ms: float) -> int:
    return int(math.log1p(max(0.0, latency_ms)) / math.log(_GROWTH))


def _bucket_middle_ms(bucket: int) -> float:
    return (_GROWTH ** bucket + _GROWTH ** (bucket + 1)) / 2 - 1


def add(conn: sqlite3.Connection, row: tuple, reasons: list[str]) -> None:
    """Add one `requests` row (in _COLUMNS order) to the aggregates; call inside its transaction."""
    _rid, ts, tier, backend, model, prompt, completion, cost, latency, outcome, _reasons, degraded = row
    day = day_of(ts)
    conn.execute(_ADD_DAILY, (day, tier, backend, model, int(outcome != "ok"), degraded, prompt, completion, cost))
    if reasons:
        conn.executemany(_ADD_REASON, [(day, code, n) for code, n in Counter(reasons).items()])
    conn.execute(_ADD_LATENCY, (day, _bucket(latency), 1))


def add_many(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    """add() for many rows at once, summed in memory first; call inside their transaction."""
    daily: dict[tuple[str, str, str, str], list[float]] = {}
    reasons: Counter[tuple[str, str]] = Counter()
    latency: Counter[tuple[str, int]] = Counter()
    days: dict[int, str] = {}  # whole seconds -> day: day_of() once per distinct second, not per row
    for _rid, ts, tier, backend, model, prompt, completion, cost, ms, outcome, codes, degraded in rows:
        day = days.get(int(ts)) or days.setdefault(int(ts), day_of(ts))
        sums = daily.setdefault((day, tier, backend, model), [0, 0, 0, 0, 0, 0.0])
        sums[0] += 1
        sums[1] += outcome != "ok"
        sums[2] += degraded
        sums[3] += prompt
        sums[4] += completion
        sums[5] += cost
        reasons.update((day, code) for code in json.loads(codes))
        latency[(day, _bucket(ms))] += 1
    conn.executemany("""INSERT INTO daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (day, tier, backend, model) DO UPDATE SET requests = requests + excluded.requests,
        failed = failed + excluded.failed, degraded = degraded + excluded.degraded,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens,
        cost_usd = cost_usd + excluded.cost_usd""", [(*k, *v) for k, v in daily.items()])
    conn.executemany(_ADD_REASON, [(d, c, n) for (d, c), n in reasons.items()])
    conn.executemany(_ADD_LATENCY, [(d, b, n) for (d, b), n in latency.items()])


def backfill(conn: sqlite3.Connection) -> None:
    """Build the aggregates from every existing row (a ledger made before they existed)."""
    add_many(conn, conn.execute("SELECT request_id, ts, tier, backend, model, prompt_tokens, completion_tokens, "
                                "cost_usd, latency_ms, outcome, reasons, degraded FROM requests"))


def day_usage(conn: sqlite3.Connection, day: date, start_ts: float, end_ts: float) -> DayUsage:
    """One day's usage from the aggregates; the median from the raw rows while all of the
    day's rows are still kept, else from the histogram."""
    key = day.isoformat()
    by_tier = {t: 0 for t in TIER_COLUMNS}
    requests = failed = degraded = prompt = completion = 0
    cost = 0.0
    for tier, n, f, d, p, c, usd in conn.execute(
            "SELECT tier, SUM(requests), SUM(failed), SUM(degraded), SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(cost_usd) FROM daily WHERE day = ? GROUP BY tier", (key,)):
        if tier in by_tier:
            by_tier[tier] += n
        requests, failed, degraded, prompt, completion, cost = (
            requests + n, failed + f, degraded + d, prompt + p, completion + c, cost + usd)
    top = conn.execute("SELECT code, n FROM daily_reasons WHERE day = ? ORDER BY n DESC, code LIMIT 3",
                       (key,)).fetchall()
    return DayUsage(day=day, requests=requests, by_tier=by_tier, prompt_tokens=prompt, completion_tokens=completion,
                    cost_usd=cost, p50_latency_ms=_median(conn, key, requests, start_ts, end_ts) if requests else None,
                    degraded_share=degraded / requests if requests else 0.0, failed=failed,
                    top_reasons=[(code, n) for code, n in top])


def _median(conn: sqlite3.Connection, key: str, requests: int, start_ts: float, end_ts: float) -> float:
    kept = conn.execute("SELECT COUNT(*) FROM requests WHERE ts >= ? AND ts < ?", (start_ts, end_ts)).fetchone()[0]
    if kept == requests:  # every row of the day is still there: the exact median
        middle = conn.execute("SELECT latency_ms FROM requests WHERE ts >= ? AND ts < ? ORDER BY latency_ms "
                              "LIMIT ? OFFSET ?", (start_ts, end_ts, 2 - requests % 2, (requests - 1) // 2)).fetchall()
        return sum(m[0] for m in middle) / len(middle)
    # The middle one (or two, for an even count) of the day's latencies, each read as its bucket's middle.
    wanted, found = [(requests - 1) // 2, requests // 2], []
    seen = 0
    for bucket, n in conn.execute("SELECT bucket, n FROM daily_latency WHERE day = ? ORDER BY bucket", (key,)):
        seen += n
        while wanted and wanted[0] < seen:
            found.append(_bucket_middle_ms(bucket))
            wanted.pop(0)
    return sum(found) / len(found) if found else 0.0
