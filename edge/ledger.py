"""The ledger: one SQLite row per answered (or refused) request, and budgets read from it.

Budgets are sums over the ledger, never in-memory counters, so a restart or
`kill -9` does not reset what was spent. The file is in WAL mode with
synchronous=NORMAL: a committed row survives the process being killed at any
point; a power loss may lose the last few commits but never corrupts the file.

Days and months are UTC calendar days and months everywhere in this module.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

import platformdirs

from edge.errors import ConfigError
from edge.private_files import private_state_file
from edge.types import Tier

__all__ = [
    "Ledger",
    "LedgerEntry",
    "BudgetWindow",
    "BudgetStatus",
    "BudgetLimits",
    "DayUsage",
    "SCHEMA_VERSION",
    "TIERS",
    "default_ledger_path",
    "format_usage",
    "utc_day_start",
    "utc_month_start",
]

SCHEMA_VERSION = 1
TIERS = tuple(str(t) for t in Tier)
# Sums of float costs drift in the last bits; a budget is not "exceeded" by that.
_EPSILON_USD = 1e-9
# Another process (the `edge usage` CLI, a second daemon) may hold the write
# lock briefly; wait for it rather than fail the record.
_BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT    NOT NULL,
    ts                REAL    NOT NULL,
    tier              TEXT    NOT NULL,
    backend           TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          REAL    NOT NULL,
    latency_ms        REAL    NOT NULL,
    outcome           TEXT    NOT NULL,
    reasons           TEXT    NOT NULL,
    degraded          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""

_COLUMNS = ("request_id", "ts", "tier", "backend", "model", "prompt_tokens", "completion_tokens",
            "cost_usd", "latency_ms", "outcome", "reasons", "degraded")


@dataclass(frozen=True)
class LedgerEntry:
    """One request as the ledger keeps it.

    ts: unix seconds; tier: "local", "onprem" or "cloud"; outcome: "ok" or a
    gRPC status name ("RESOURCE_EXHAUSTED"); reasons: routing reason codes;
    cost_usd: what was spent (cloud list price, or local energy/amortization).
    Construction raises ValueError for an unknown tier or a negative count/cost.
    """

    request_id: str
    ts: float
    tier: str
    backend: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    outcome: str = "ok"
    reasons: list[str] = field(default_factory=list)
    degraded: bool = False

    def __post_init__(self) -> None:
        if self.tier not in TIERS and self.tier != "":
            # "" = refused before any tier served it (bad input, queue full, nothing reachable).
            raise ValueError(f"tier must be one of {', '.join(TIERS)} or empty, got {self.tier!r}")
        if min(self.prompt_tokens, self.completion_tokens) < 0 or self.cost_usd < 0 or self.latency_ms < 0:
            raise ValueError("token counts, cost_usd and latency_ms must be >= 0")
        if not math.isfinite(self.ts) or not math.isfinite(self.cost_usd):
            raise ValueError("ts and cost_usd must be finite")


class BudgetLimits(Protocol):
    """What budget checks read from the settings (edge.config.CostSettings has it)."""

    max_cost_per_request_usd: float
    daily_budget_usd: float
    monthly_budget_usd: float


@dataclass(frozen=True)
class BudgetWindow:
    """Spending in one window; limit and remaining are None when there is no budget."""

    spent_usd: float
    limit_usd: float | None
    remaining_usd: float | None

    @property
    def exhausted(self) -> bool:
        return self.remaining_usd is not None and self.remaining_usd <= _EPSILON_USD


@dataclass(frozen=True)
class BudgetStatus:
    """The UTC day's and month's spending against their budgets."""

    day: BudgetWindow
    month: BudgetWindow

    @property
    def exhausted(self) -> bool:
        """True when either budget has nothing left."""
        return self.day.exhausted or self.month.exhausted


@dataclass(frozen=True)
class DayUsage:
    """One UTC day's requests, summed. p50_latency_ms is None on a day without requests."""

    day: date
    requests: int
    by_tier: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    p50_latency_ms: float | None
    degraded_share: float
    failed: int
    top_reasons: list[tuple[str, int]]


def default_ledger_path() -> Path:
    """EDGE_LEDGER if set, else `<user data dir>/edge/ledger.sqlite3`."""
    env = os.environ.get("EDGE_LEDGER")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("edge")) / "ledger.sqlite3"


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def utc_day_start(now: float | None = None) -> float:
    """Unix time of 00:00 UTC on the day containing `now` (default: the current time)."""
    d = datetime.fromtimestamp(_now(now), UTC)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def utc_month_start(now: float | None = None) -> float:
    """Unix time of 00:00 UTC on the first day of the month containing `now`."""
    d = datetime.fromtimestamp(_now(now), UTC)
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def _usd(x: float) -> str:
    return f"${x:,.4f}"


def _window(spent: float, limit: float) -> BudgetWindow:
    if limit <= 0:  # 0 = no budget
        return BudgetWindow(spent, None, None)
    return BudgetWindow(spent, limit, limit - spent)


class Ledger:
    """The request ledger in one SQLite file; safe to share between threads.

    One connection guarded by a lock: every call is one short statement or
    transaction, so threads (asyncio.to_thread) never wait long. Other
    processes may open the same file; WAL lets them read while this writes.
    Raises ConfigError when `path` is not a usable ledger.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            # The ledger is every tenant's usage: this user's only, in edge's own directory.
            private_state_file(self.path, own_dir=self.path.parent == default_ledger_path().parent)
            # isolation_level=None: no implicit transactions; each INSERT
            # commits on its own, schema setup uses an explicit one.
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                         timeout=_BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"ledger {self.path}: cannot open: {exc}") from exc
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(f"ledger {self.path}: not a usable SQLite ledger: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # journal_mode cannot change inside a transaction; it persists in the file.
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = NORMAL")
        # IMMEDIATE: two processes opening a fresh file must not both create it.
        c.execute("BEGIN IMMEDIATE")
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(f"ledger {self.path}: schema version {version} is newer than this edge "
                                  f"understands ({SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------

    def record(self, entry: LedgerEntry) -> None:
        """Append one entry; it is committed (survives kill -9) when this returns."""
        row = (entry.request_id, entry.ts, entry.tier, entry.backend, entry.model, entry.prompt_tokens,
               entry.completion_tokens, entry.cost_usd, entry.latency_ms, entry.outcome,
               json.dumps(list(entry.reasons)), int(entry.degraded))
        sql = f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._lock:
            self._conn.execute(sql, row)

    # -- reading --------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def entries(self, since_ts: float = 0.0, until_ts: float | None = None) -> list[LedgerEntry]:
        """Entries with since_ts <= ts (< until_ts when given), in the order they were recorded."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE ts >= ?"
        args: list[object] = [since_ts]
        if until_ts is not None:
            sql += " AND ts < ?"
            args.append(until_ts)
        rows = self._query(sql + " ORDER BY id", args)
        return [LedgerEntry(*r[:10], reasons=json.loads(r[10]), degraded=bool(r[11])) for r in rows]

    def spent_usd(self, since_ts: float, until_ts: float | None = None) -> float:
        """USD recorded with since_ts <= ts (< until_ts when given), whatever the outcome."""
        sql, args = "SELECT COALESCE(SUM(cost_usd), 0.0) FROM requests WHERE ts >= ?", [since_ts]
        if until_ts is not None:
            sql += " AND ts < ?"
            args.append(until_ts)
        return float(self._query(sql, args)[0][0])

    def spent_today_usd(self, now: float | None = None) -> float:
        """USD spent in the UTC calendar day containing `now` (default: the current time)."""
        start = utc_day_start(now)
        return self.spent_usd(start, (datetime.fromtimestamp(start, UTC) + timedelta(days=1)).timestamp())

    def spent_this_month_usd(self, now: float | None = None) -> float:
        """USD spent in the UTC calendar month containing `now` (default: the current time)."""
        start = datetime.fromtimestamp(utc_month_start(now), UTC)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return self.spent_usd(start.timestamp(), end.timestamp())

    # -- budgets --------------------------------------------------------------

    def budget_status(self, settings: BudgetLimits, now: float | None = None) -> BudgetStatus:
        """The UTC day's and month's spending against daily_budget_usd and monthly_budget_usd."""
        now = _now(now)
        return BudgetStatus(day=_window(self.spent_today_usd(now), settings.daily_budget_usd),
                            month=_window(self.spent_this_month_usd(now), settings.monthly_budget_usd))

    def allows(self, estimated_cost_usd: float, settings: BudgetLimits, now: float | None = None,
               status: BudgetStatus | None = None) -> tuple[bool, str]:
        """May a request estimated to cost this much go ahead?

        (False, reason) when the estimate is above max_cost_per_request_usd, or
        when spent + estimate would exceed the daily or monthly budget (a budget
        of 0 is none); the reason names the budget and the amounts. (True, "")
        otherwise. The check does not reserve anything: concurrent requests
        may each pass and together overshoot by what they cost. Pass `status`
        (from budget_status at the same `now`) to check several estimates
        against one read of the ledger.
        """
        if estimated_cost_usd < 0:
            raise ValueError(f"estimated_cost_usd must be >= 0, got {estimated_cost_usd}")
        ceiling = settings.max_cost_per_request_usd
        if ceiling > 0 and estimated_cost_usd > ceiling + _EPSILON_USD:
            return False, (f"per-request ceiling: estimate {_usd(estimated_cost_usd)} exceeds "
                           f"max_cost_per_request_usd {_usd(ceiling)}")
        if settings.daily_budget_usd <= 0 and settings.monthly_budget_usd <= 0:
            return True, ""
        now = _now(now)  # once: both windows and the message must agree on the day
        status = status or self.budget_status(settings, now)
        day = datetime.fromtimestamp(now, UTC)
        for name, key, window, period in (
            ("daily budget", "daily_budget_usd", status.day, f"UTC day {day:%Y-%m-%d}"),
            ("monthly budget", "monthly_budget_usd", status.month, f"UTC month {day:%Y-%m}"),
        ):
            if window.limit_usd is not None and window.spent_usd + estimated_cost_usd > window.limit_usd + _EPSILON_USD:
                return False, (f"{name}: spent {_usd(window.spent_usd)} + estimate {_usd(estimated_cost_usd)} "
                               f"would exceed {key} {_usd(window.limit_usd)} ({period})")
        return True, ""

    # -- reports --------------------------------------------------------------

    def usage_by_day(self, days: int = 7, now: float | None = None) -> list[DayUsage]:
        """The last `days` UTC days up to and including `now`'s, oldest first.

        Every day is listed, those without requests as zeros. p50 is the median
        latency (mean of the middle two for an even count); top_reasons are the
        three most frequent reason codes, ties by name.
        """
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        today = datetime.fromtimestamp(utc_day_start(now), UTC)
        first = today - timedelta(days=days - 1)
        end = today + timedelta(days=1)
        rows = self._query(
            "SELECT ts, tier, prompt_tokens, completion_tokens, cost_usd, latency_ms, outcome, reasons, degraded "
            "FROM requests WHERE ts >= ? AND ts < ? ORDER BY ts", (first.timestamp(), end.timestamp()))
        by_day: dict[date, list[tuple]] = {(first + timedelta(days=i)).date(): [] for i in range(days)}
        for r in rows:
            by_day[datetime.fromtimestamp(r[0], UTC).date()].append(r)
        return [_summarize(d, day_rows) for d, day_rows in by_day.items()]


def _summarize(day: date, rows: list[tuple]) -> DayUsage:
    tiers = Counter(r[1] for r in rows)
    reasons: Counter[str] = Counter()
    for r in rows:
        reasons.update(json.loads(r[7]))
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    n = len(rows)
    return DayUsage(
        day=day,
        requests=n,
        by_tier={t: tiers.get(t, 0) for t in TIERS},
        prompt_tokens=sum(r[2] for r in rows),
        completion_tokens=sum(r[3] for r in rows),
        cost_usd=sum(r[4] for r in rows),
        p50_latency_ms=statistics.median(r[5] for r in rows) if rows else None,
        degraded_share=sum(r[8] for r in rows) / n if n else 0.0,
        failed=sum(1 for r in rows if r[6] != "ok"),
        top_reasons=top,
    )


def format_usage(rows: list[DayUsage]) -> str:
    """A fixed-width table of `usage_by_day` rows with a total line, for `edge usage`."""
    header = ("day", "requests", "local", "onprem", "cloud", "tokens in", "tokens out", "cost USD",
              "p50 ms", "degraded", "failed", "top reasons")
    body = []
    for u in rows:
        body.append((
            u.day.isoformat(), str(u.requests), str(u.by_tier["local"]), str(u.by_tier["onprem"]),
            str(u.by_tier["cloud"]), str(u.prompt_tokens), str(u.completion_tokens), f"{u.cost_usd:.4f}",
            "-" if u.p50_latency_ms is None else f"{u.p50_latency_ms:.0f}",
            f"{u.degraded_share:.0%}", str(u.failed),
            ", ".join(f"{code} ({n})" for code, n in u.top_reasons) or "-",
        ))
    total_requests = sum(u.requests for u in rows)
    degraded = sum(u.degraded_share * u.requests for u in rows)
    total = (
        "total", str(total_requests), *(str(sum(u.by_tier[t] for u in rows)) for t in TIERS),
        str(sum(u.prompt_tokens for u in rows)), str(sum(u.completion_tokens for u in rows)),
        f"{sum(u.cost_usd for u in rows):.4f}", "",
        f"{degraded / total_requests:.0%}" if total_requests else "0%", str(sum(u.failed for u in rows)), "",
    )
    table = [header, *body, total]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        # Text columns left-aligned, numbers right-aligned; no trailing spaces.
        cells = [c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body), rule, line(total)])
