"""The ledger: one SQLite row per answered (or refused) request, and budgets read from it.

Each row is written with its day's aggregates in one transaction (edge.ledger_aggregates),
so budgets and `edge usage` read small per-day tables whatever the history's length;
rows older than the retention window are deleted and the aggregates stay. Spending
per day is also kept in memory, loaded from the aggregates and updated as each row
commits, so a budget check reads no file; `refresh()` re-reads it (another process
may write the same ledger). A restart or `kill -9` loses nothing: the aggregates are
committed with the rows. The file is in WAL mode with synchronous=NORMAL: a
committed row survives the process being killed at any point; a power loss may lose
the last few commits but never corrupts the file.

Days and months are UTC calendar days and months everywhere in this module.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import platformdirs

from edge import ledger_aggregates as aggregates
from edge.errors import ConfigError
from edge.private_files import private_state_file
from edge.usage import DayUsage, format_usage
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

SCHEMA_VERSION = 2  # 2: the daily aggregates
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
_INSERT = f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


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
        self._lock = threading.Lock()  # the connection: statements and transactions
        # Spending per UTC day ('2026-11-29' -> USD) for the months loaded so far. Its own
        # lock, held only to read or change the dict: a budget check on the event loop
        # never waits behind a write that waits for SQLite.
        self._totals_lock = threading.Lock()
        self._spent_by_day: dict[str, float] = {}
        self._months: set[str] = set()
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
                for stmt in (_SCHEMA + aggregates.SCHEMA).split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                if version == 1:
                    aggregates.backfill(c)  # a ledger from before the aggregates
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
        """Append one entry with its day's aggregates; committed (survives kill -9) when this returns."""
        row = (entry.request_id, entry.ts, entry.tier, entry.backend, entry.model, entry.prompt_tokens,
               entry.completion_tokens, entry.cost_usd, entry.latency_ms, entry.outcome,
               json.dumps(list(entry.reasons)), int(entry.degraded))
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(_INSERT, row)
                aggregates.add(c, row, list(entry.reasons))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            if entry.cost_usd:
                day = aggregates.day_of(entry.ts)
                with self._totals_lock:
                    if day[:7] in self._months:
                        self._spent_by_day[day] = self._spent_by_day.get(day, 0.0) + entry.cost_usd

    def record_many(self, entries: Iterable[LedgerEntry]) -> int:
        """Append many entries and their aggregates in one transaction (imports, tests and
        benchmarks that need a long history fast). Returns how many."""
        rows = [(e.request_id, e.ts, e.tier, e.backend, e.model, e.prompt_tokens, e.completion_tokens, e.cost_usd,
                 e.latency_ms, e.outcome, json.dumps(list(e.reasons)), int(e.degraded)) for e in entries]
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(_INSERT, rows)
                aggregates.add_many(c, rows)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            with self._totals_lock:
                self._months.clear()  # re-read on the next budget check
                self._spent_by_day.clear()
        return len(rows)

    def prune(self, older_than_ts: float, batch: int = 10_000) -> int:
        """Delete raw rows recorded before `older_than_ts` (their aggregates stay), a batch
        per transaction so writers never wait long. Returns how many went."""
        deleted = 0
        while True:
            with self._lock:
                n = self._conn.execute("DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts < ? "
                                       "ORDER BY id LIMIT ?)", (older_than_ts, batch)).rowcount
            deleted += n
            if n < batch:
                return deleted

    # -- budgets in memory ---------------------------------------------------------

    def _load_month(self, month: str) -> None:
        """Spending per day of `month` ('2026-11') from the aggregates (under the connection's
        lock, so no commit of this process falls between the read and the swap)."""
        nxt = f"{int(month[:4]) + 1}-01" if month[5:] == "12" else f"{month[:4]}-{int(month[5:]) + 1:02d}"
        with self._lock:
            rows = self._conn.execute("SELECT day, SUM(cost_usd) FROM daily WHERE day >= ? AND day < ? GROUP BY day",
                                      (f"{month}-01", f"{nxt}-01")).fetchall()
            with self._totals_lock:
                for day in [d for d in self._spent_by_day if d.startswith(month)]:
                    del self._spent_by_day[day]
                self._spent_by_day.update({day: float(usd) for day, usd in rows})
                self._months.add(month)

    def budget_loaded(self, now: float | None = None) -> bool:
        """Is `now`'s month in memory (a budget check then reads no file)?"""
        return aggregates.day_of(_now(now))[:7] in self._months

    def refresh(self) -> None:
        """Re-read the loaded months from the aggregates: picks up another process's writes."""
        for month in sorted(self._months):
            self._load_month(month)

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
        """USD spent in the UTC calendar day containing `now` (default: the current time).
        O(1): from memory once the month is loaded."""
        day = aggregates.day_of(_now(now))
        if day[:7] not in self._months:
            self._load_month(day[:7])
        with self._totals_lock:
            return self._spent_by_day.get(day, 0.0)

    def spent_this_month_usd(self, now: float | None = None) -> float:
        """USD spent in the UTC calendar month containing `now` (default: the current time).
        At most 31 additions, from memory once the month is loaded."""
        month = aggregates.day_of(_now(now))[:7]
        if month not in self._months:
            self._load_month(month)
        with self._totals_lock:
            return sum(usd for day, usd in self._spent_by_day.items() if day.startswith(month))

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
        """The last `days` UTC days up to and including `now`'s, oldest first, from the
        aggregates (edge.usage says what is exact and what is binned).

        Every day is listed, those without requests as zeros. p50 is the median
        latency (mean of the middle two for an even count); top_reasons are the
        three most frequent reason codes, ties by name.
        """
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        today = datetime.fromtimestamp(utc_day_start(now), UTC)
        out = []
        with self._lock:
            for i in range(days):
                start = today - timedelta(days=days - 1 - i)
                end = start + timedelta(days=1)
                out.append(aggregates.day_usage(self._conn, start.date(), start.timestamp(), end.timestamp()))
        return out
