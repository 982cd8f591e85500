"""Prices, the SQLite ledger, budgets read from it, usage reports, and durability under kill -9."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.errors import ConfigError
from edge.ledger import (
    SCHEMA_VERSION,
    Ledger,
    LedgerEntry,
    default_ledger_path,
    format_usage,
)
from edge.config import CostSettings, PriceOverride
from edge.pricing import Price, PriceTable, cost_usd, local_cost_usd

ROOT = Path(__file__).resolve().parents[1]


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0.0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp() + s


def entry(request_id: str, ts: float, cost: float = 0.0, *, tier: str = "cloud", latency_ms: float = 100.0,
          prompt_tokens: int = 10, completion_tokens: int = 20, outcome: str = "ok",
          reasons: list[str] | None = None, degraded: bool = False) -> LedgerEntry:
    return LedgerEntry(request_id=request_id, ts=ts, tier=tier, backend=f"{tier}-backend", model="m",
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                       latency_ms=latency_ms, outcome=outcome, reasons=reasons or [], degraded=degraded)


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "ledger.sqlite3") as led:
        yield led


# -- prices -----------------------------------------------------------------------

REQUIRED_MODELS = [
    ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"), ("openai", "gpt-4.1-mini"),
    ("openai", "gpt-4.1-nano"), ("anthropic", "claude-3-5-haiku-latest"), ("anthropic", "claude-3-7-sonnet-latest"),
    ("anthropic", "claude-sonnet-4"), ("anthropic", "claude-opus-4"), ("gemini", "gemini-2.0-flash"),
    ("gemini", "gemini-2.0-flash-lite"), ("gemini", "gemini-2.5-flash"), ("gemini", "gemini-2.5-pro"),
]


def test_bundled_table_prices_every_listed_model_exactly() -> None:
    table = PriceTable.load()
    assert table.as_of == "2026-11-01"
    for provider, model in REQUIRED_MODELS:
        price = table.price_for(provider, model)
        assert price is not None and price.model == model, (provider, model)
        assert price.source == "bundled"
        assert 0 < price.input_per_mtok < price.output_per_mtok


def test_exact_lookup_and_longest_prefix() -> None:
    table = PriceTable.load()
    assert table.price_for("openai", "gpt-4o") == Price("openai", "gpt-4o", 2.50, 10.00)
    mini = table.price_for("openai", "gpt-4o-mini-2024-07-18")
    assert mini is not None and mini.model == "gpt-4o-mini"  # not the shorter gpt-4o
    assert (mini.input_per_mtok, mini.output_per_mtok) == (0.15, 0.60)
    snapshot = table.price_for("openai", "gpt-4o-2024-08-06")
    assert snapshot is not None and snapshot.model == "gpt-4o"
    sonnet = table.price_for("anthropic", "claude-sonnet-4-20250514")
    assert sonnet is not None and sonnet.model == "claude-sonnet-4"
    assert table.price_for("OpenAI", "GPT-4o-Mini") == table.price_for("openai", "gpt-4o-mini")


def test_unknown_model_or_provider_has_no_price() -> None:
    table = PriceTable.load()
    assert table.price_for("openai", "llama-3.1-8b-instruct") is None
    assert table.price_for("anthropic", "gpt-4o") is None  # the provider is part of the key
    assert table.price_for("openai", "gpt-4omni") is None  # a prefix must end at a separator
    assert table.price_for("openai", "my-onprem-model") is None


def test_overrides_beat_the_bundled_table_and_add_models() -> None:
    table = PriceTable.load([
        PriceOverride(provider="openai", model="gpt-4o-mini", input_per_mtok=1.0, output_per_mtok=2.0),
        PriceOverride(provider="OpenAI", model="My-Proxy-Model", input_per_mtok=0.0, output_per_mtok=0.5),
    ])
    over = table.price_for("openai", "gpt-4o-mini")
    assert over == Price("openai", "gpt-4o-mini", 1.0, 2.0, "config")
    dated = table.price_for("openai", "gpt-4o-mini-2024-07-18")
    assert dated is not None and dated.source == "config"
    plain = table.price_for("openai", "gpt-4o")
    assert plain is not None and plain.input_per_mtok == 2.50  # untouched rows stay bundled
    added = table.price_for("openai", "my-proxy-model")
    assert added is not None and added.output_per_mtok == 0.5


def test_cost_arithmetic() -> None:
    price = Price("openai", "x", input_per_mtok=2.50, output_per_mtok=10.00)
    assert cost_usd(price, 1000, 500) == pytest.approx(0.0025 + 0.005)
    assert cost_usd(price, 0, 0) == 0.0
    table = PriceTable.load()
    assert cost_usd(table.price_for("openai", "gpt-4o-mini"), 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_usd(table.price_for("anthropic", "claude-opus-4"), 2_000, 1_000) == pytest.approx(0.03 + 0.075)
    with pytest.raises(ValueError):
        cost_usd(price, -1, 0)


def test_local_cost_arithmetic() -> None:
    # 1 kW for an hour at $0.30/kWh, no amortization.
    assert local_cost_usd(3600, watts=1000, usd_per_kwh=0.30, amortization_usd_per_hour=0.0) == pytest.approx(0.30)
    # 15 W for half an hour = 0.0075 kWh -> $0.00225, plus half of $0.50/h.
    assert local_cost_usd(1800, watts=15, usd_per_kwh=0.30, amortization_usd_per_hour=0.50) == pytest.approx(0.25225)
    assert local_cost_usd(0, watts=15, usd_per_kwh=0.30, amortization_usd_per_hour=1.0) == 0.0
    with pytest.raises(ValueError):
        local_cost_usd(-1, watts=15, usd_per_kwh=0.30, amortization_usd_per_hour=0.0)


def test_cost_settings_defaults_and_bounds() -> None:
    s = CostSettings()
    assert (s.local_watts, s.usd_per_kwh, s.local_amortization_usd_per_hour) == (15.0, 0.30, 0.0)
    assert (s.max_cost_per_request_usd, s.daily_budget_usd, s.monthly_budget_usd, s.prices) == (0.0, 0.0, 0.0, [])
    for field in CostSettings.model_fields.values():
        assert field.description, field
    with pytest.raises(ValidationError, match="daily_budget"):
        CostSettings(daily_budget_usd=-1)
    with pytest.raises(ValidationError, match="extra"):
        CostSettings(daily_budget=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="input_per_mtok"):
        PriceOverride(provider="openai", model="x", input_per_mtok=-0.1, output_per_mtok=1)
    dup = {"provider": "openai", "model": "gpt-4o", "input_per_mtok": 1, "output_per_mtok": 1}
    with pytest.raises(ValidationError, match="openai/gpt-4o"):
        CostSettings(prices=[dup, {**dup, "model": "GPT-4o"}])


def test_malformed_price_table_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "prices.toml"
    bad.write_text('as_of = "2026-11-01"\n[[model]]\nprovider = "openai"\nmodel = "x"\n'
                   'input_per_mtok = -1\noutput_per_mtok = 1\n')
    with pytest.raises(ConfigError, match=r"model\.0\.input_per_mtok"):
        PriceTable.load(path=bad)
    bad.write_text("as_of = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PriceTable.load(path=bad)


# -- the ledger file --------------------------------------------------------------

def test_fresh_ledger_is_wal_with_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "ledger.sqlite3"
    Ledger(path).close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    Ledger(path).close()  # reopening an existing ledger is fine


def test_unusable_files_are_config_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="junk.sqlite3"):
        Ledger(junk)
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer"):
        Ledger(newer)


def test_default_path_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGE_LEDGER", raising=False)
    assert default_ledger_path().name == "ledger.sqlite3"
    monkeypatch.setenv("EDGE_LEDGER", str(tmp_path / "elsewhere.db"))
    assert default_ledger_path() == tmp_path / "elsewhere.db"


def test_entry_validation() -> None:
    with pytest.raises(ValueError, match="tier"):
        entry("a", 0.0, tier="edge")
    with pytest.raises(ValueError):
        entry("a", 0.0, cost=-0.01)


def test_record_round_trips_every_field(ledger: Ledger) -> None:
    e = entry("req-1", utc(2026, 11, 1, 12), 0.125, tier="onprem", latency_ms=321.5, prompt_tokens=7,
              completion_tokens=9, outcome="RESOURCE_EXHAUSTED", reasons=["long_prompt", "needs_quality"],
              degraded=True)
    ledger.record(e)
    assert ledger.entries() == [e]


def test_spent_today_and_month_across_utc_boundaries(ledger: Ledger) -> None:
    ledger.record(entry("sep", utc(2026, 9, 30, 23), 4.0))
    ledger.record(entry("oct-noon", utc(2026, 10, 31, 12), 1.0))
    ledger.record(entry("oct-last", utc(2026, 10, 31, 23, 59, 59.5), 0.25))
    ledger.record(entry("nov-first", utc(2026, 11, 1), 0.5))
    ledger.record(entry("nov-evening", utc(2026, 11, 1, 18), 0.125))

    before_midnight = utc(2026, 10, 31, 23, 59, 59.9)
    assert ledger.spent_today_usd(before_midnight) == pytest.approx(1.25)
    assert ledger.spent_this_month_usd(before_midnight) == pytest.approx(1.25)

    at_midnight = utc(2026, 11, 1)
    assert ledger.spent_today_usd(at_midnight) == pytest.approx(0.625)
    assert ledger.spent_this_month_usd(at_midnight) == pytest.approx(0.625)

    late_september = utc(2026, 9, 30, 23, 30)
    assert ledger.spent_today_usd(late_september) == pytest.approx(4.0)
    assert ledger.spent_this_month_usd(late_september) == pytest.approx(4.0)

    assert ledger.spent_today_usd(utc(2026, 11, 2)) == 0.0
    assert ledger.spent_usd(utc(2026, 10, 31)) == pytest.approx(1.875)
    # December rolls the year over correctly.
    ledger.record(entry("dec", utc(2026, 12, 31, 23), 2.0))
    ledger.record(entry("jan", utc(2027, 1, 1, 1), 3.0))
    assert ledger.spent_this_month_usd(utc(2026, 12, 15)) == pytest.approx(2.0)
    assert ledger.spent_this_month_usd(utc(2027, 1, 1, 2)) == pytest.approx(3.0)


# -- budgets ----------------------------------------------------------------------

NOW = utc(2026, 11, 15, 12)


@pytest.fixture
def spent(ledger: Ledger) -> Ledger:
    """Today (Nov 15) $1.50 spent, this month $3.50."""
    ledger.record(entry("early-month", utc(2026, 11, 2), 2.0))
    ledger.record(entry("today", utc(2026, 11, 15, 1), 1.5))
    ledger.record(entry("last-month", utc(2026, 10, 20), 50.0))
    return ledger


def test_allows_refuses_past_the_daily_budget(spent: Ledger) -> None:
    s = CostSettings(daily_budget_usd=2.0)
    assert spent.allows(0.4, s, now=NOW) == (True, "")
    assert spent.allows(0.5, s, now=NOW)[0] is True  # exactly reaching the budget is allowed
    ok, reason = spent.allows(0.6, s, now=NOW)
    assert not ok
    assert "daily budget" in reason and "daily_budget_usd" in reason
    assert "$1.5000" in reason and "$0.6000" in reason and "$2.0000" in reason
    assert "2026-11-15" in reason
    assert spent.allows(0.6, s, now=utc(2026, 11, 16, 0, 0, 1))[0] is True  # a new UTC day


def test_allows_refuses_past_the_monthly_budget(spent: Ledger) -> None:
    s = CostSettings(monthly_budget_usd=4.0)
    assert spent.allows(0.4, s, now=NOW)[0] is True
    ok, reason = spent.allows(0.6, s, now=NOW)
    assert not ok
    assert "monthly budget" in reason and "monthly_budget_usd" in reason
    assert "$3.5000" in reason and "$0.6000" in reason and "$4.0000" in reason
    assert spent.allows(0.6, s, now=utc(2026, 12, 1))[0] is True  # a new UTC month


def test_allows_refuses_above_the_per_request_ceiling(spent: Ledger) -> None:
    s = CostSettings(max_cost_per_request_usd=0.5)
    assert spent.allows(0.5, s, now=NOW)[0] is True
    ok, reason = spent.allows(0.6, s, now=NOW)
    assert not ok
    assert "max_cost_per_request_usd" in reason and "$0.6000" in reason and "$0.5000" in reason


def test_no_budgets_allow_anything(spent: Ledger) -> None:
    assert spent.allows(1e6, CostSettings(), now=NOW) == (True, "")


def test_budget_status(spent: Ledger) -> None:
    st = spent.budget_status(CostSettings(daily_budget_usd=1.5, monthly_budget_usd=10.0), now=NOW)
    assert (st.day.spent_usd, st.day.limit_usd, st.day.remaining_usd) == pytest.approx((1.5, 1.5, 0.0))
    assert (st.month.spent_usd, st.month.limit_usd, st.month.remaining_usd) == pytest.approx((3.5, 10.0, 6.5))
    assert st.day.exhausted and not st.month.exhausted and st.exhausted
    open_ended = spent.budget_status(CostSettings(), now=NOW)
    assert open_ended.day.limit_usd is None and open_ended.month.remaining_usd is None
    assert open_ended.month.spent_usd == pytest.approx(3.5)
    assert not open_ended.exhausted


# -- usage report -----------------------------------------------------------------

def test_usage_by_day_aggregates(ledger: Ledger) -> None:
    ledger.record(entry("a", utc(2026, 10, 31, 23, 59, 59), 0.1, tier="cloud"))
    ledger.record(entry("b", utc(2026, 11, 1, 8), 0.0, tier="local", latency_ms=100, prompt_tokens=5,
                        completion_tokens=50, reasons=["short_prompt"]))
    ledger.record(entry("c", utc(2026, 11, 1, 9), 0.0, tier="onprem", latency_ms=900, prompt_tokens=7,
                        completion_tokens=70, reasons=["long_prompt", "needs_quality"], degraded=True))
    ledger.record(entry("d", utc(2026, 11, 1, 10), 0.5, tier="cloud", latency_ms=200, prompt_tokens=11,
                        completion_tokens=110, outcome="UNAVAILABLE", reasons=["needs_quality"], degraded=True))
    ledger.record(entry("e", utc(2026, 11, 2, 1), 0.0, tier="local", latency_ms=10))
    ledger.record(entry("f", utc(2026, 11, 2, 2), 0.0, tier="local", latency_ms=30))
    ledger.record(entry("g", utc(2026, 11, 2, 3), 0.0, tier="local", latency_ms=40))
    ledger.record(entry("h", utc(2026, 11, 2, 4), 0.0, tier="local", latency_ms=1000))

    rows = ledger.usage_by_day(days=3, now=utc(2026, 11, 2, 10))
    assert [r.day for r in rows] == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    oct31, nov1, nov2 = rows
    assert oct31.requests == 1 and oct31.by_tier == {"local": 0, "onprem": 0, "cloud": 1}

    assert nov1.requests == 3
    assert nov1.by_tier == {"local": 1, "onprem": 1, "cloud": 1}
    assert (nov1.prompt_tokens, nov1.completion_tokens) == (23, 230)
    assert nov1.cost_usd == pytest.approx(0.5)
    assert nov1.p50_latency_ms == 200  # the median, not the mean (400)
    assert nov1.degraded_share == pytest.approx(2 / 3)
    assert nov1.failed == 1
    assert nov1.top_reasons == [("needs_quality", 2), ("long_prompt", 1), ("short_prompt", 1)]

    assert nov2.requests == 4 and nov2.by_tier["local"] == 4
    assert nov2.p50_latency_ms == 35  # median of an even count: mean of the middle two
    assert nov2.degraded_share == 0.0 and nov2.top_reasons == []

    only_today = ledger.usage_by_day(days=1, now=utc(2026, 11, 2, 10))
    assert [r.day for r in only_today] == [date(2026, 11, 2)]
    wide = ledger.usage_by_day(days=5, now=utc(2026, 11, 2, 10))
    assert wide[0].day == date(2026, 10, 29) and wide[0].requests == 0 and wide[0].p50_latency_ms is None


def test_format_usage_table(ledger: Ledger) -> None:
    ledger.record(entry("b", utc(2026, 11, 1, 8), 0.25, tier="cloud", latency_ms=120, reasons=["needs_quality"],
                        degraded=True))
    ledger.record(entry("c", utc(2026, 11, 1, 9), 0.0, tier="local", latency_ms=80, reasons=["needs_quality"]))
    text = format_usage(ledger.usage_by_day(days=2, now=utc(2026, 11, 1, 10)))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["day", "requests"]
    nov1 = next(line for line in lines if line.startswith("2026-11-01"))
    assert nov1.split()[1:5] == ["2", "1", "0", "1"]  # requests, local, onprem, cloud
    assert "0.2500" in nov1 and "50%" in nov1 and "needs_quality (2)" in nov1
    empty = next(line for line in lines if line.startswith("2026-10-31"))
    assert empty.split()[1] == "0"
    assert lines[-1].startswith("total") and lines[-1].split()[1] == "2"
    assert "total" in format_usage([])


# -- durability and concurrency -----------------------------------------------------

CHILD = """
import os, sys
from pathlib import Path
from edge.ledger import Ledger, LedgerEntry

ledger = Ledger(Path(sys.argv[1]))
ack = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
for i in range(int(sys.argv[3])):
    ledger.record(LedgerEntry(f"req-{i}", 1_800_000_000.0 + i, "cloud", "b", "m", i, 2 * i, (i + 1) / 1000,
                              10.0, "ok", ["r"], i % 2 == 0))
    # Acknowledge only after record() returned, i.e. after the commit.
    os.write(ack, f"{i}\\n".encode())
    os.fsync(ack)
"""


def _kill_writer_after(db: Path, ack: Path, acks: int) -> None:
    """Run CHILD writing to `db`, SIGKILL it once it has acknowledged `acks` commits."""
    ack.touch()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(ack), "10000000"], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while ack.read_bytes().count(b"\n") < acks:
            assert child.poll() is None, f"writer exited early with {child.returncode}"
            assert time.monotonic() < deadline, "writer too slow"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_kill_9_mid_stream_keeps_every_committed_entry(tmp_path: Path) -> None:
    db, ack = tmp_path / "ledger.sqlite3", tmp_path / "acks"
    _kill_writer_after(db, ack, 300)

    lines = ack.read_bytes().split(b"\n")[:-1]  # only newline-terminated acknowledgements
    acked = int(lines[-1]) + 1
    assert [int(x) for x in lines] == list(range(acked))

    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Ledger(db) as ledger:
        got = ledger.entries()
        # Every acknowledged entry is there; at most the one in flight at the kill got in too.
        assert acked <= len(got) <= acked + 1
        assert got == [LedgerEntry(f"req-{i}", 1_800_000_000.0 + i, "cloud", "b", "m", i, 2 * i, (i + 1) / 1000,
                                   10.0, "ok", ["r"], i % 2 == 0) for i in range(len(got))]
        assert ledger.spent_usd(0) == pytest.approx(sum((i + 1) / 1000 for i in range(len(got))))
        ledger.record(entry("after", 1_900_000_000.0, 1.0))  # still writable after recovery
        assert len(ledger.entries()) == len(got) + 1


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    # Threads 0-1 share one Ledger (the daemon's pattern); 2-3 share a second
    # one on the same file, so two connections contend for SQLite's write lock.
    ledgers = [Ledger(db), Ledger(db)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            start.wait()
            for i in range(200):
                ledgers[t // 2].record(entry(f"t{t}-{i}", 1_800_000_000.0 + i, 0.001))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    for led in ledgers:
        led.close()
    assert not errors, errors
    with Ledger(db) as ledger:
        ids = [e.request_id for e in ledger.entries()]
        assert len(ids) == 800
        assert set(ids) == {f"t{t}-{i}" for t in range(4) for i in range(200)}
        assert ledger.spent_usd(0) == pytest.approx(0.8)


# -- aggregates: budgets and usage that stay flat as history grows ----------------------------------

def _random_entries(n: int, start: float, span_s: float, seed: int = 7) -> list[LedgerEntry]:
    import random

    rng = random.Random(seed)
    return [LedgerEntry(f"r{i}", start + rng.random() * span_s, rng.choice(["local", "onprem", "cloud", ""]),
                        rng.choice(["a", "b"]), "m", rng.randint(0, 50), rng.randint(0, 90),
                        rng.choice([0.0, rng.random() / 100]), rng.random() * 3000,
                        rng.choice(["ok", "ok", "ok", "UNAVAILABLE"]), rng.sample(["X", "Y", "Z"], rng.randint(0, 2)),
                        rng.random() < 0.2) for i in range(n)]


def _expected_day(entries: list[LedgerEntry], day: date) -> dict:
    rows = [e for e in entries if datetime.fromtimestamp(e.ts, UTC).date() == day]
    return {"requests": len(rows), "cost": sum(e.cost_usd for e in rows), "prompt": sum(e.prompt_tokens for e in rows),
            "failed": sum(e.outcome != "ok" for e in rows), "degraded": sum(e.degraded for e in rows)}


@pytest.mark.parametrize("bulk", [False, True], ids=["one_by_one", "record_many"])
def test_aggregates_equal_the_rows_and_survive_retention(tmp_path: Path, bulk: bool) -> None:
    start = utc(2026, 11, 1)
    entries = _random_entries(600, start, 10 * 86_400)
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        if bulk:
            ledger.record_many(entries)
        else:
            for e in entries:
                ledger.record(e)
        now = utc(2026, 11, 10, 23)

        def check() -> list:
            rows = ledger.usage_by_day(days=10, now=now)
            for u in rows:
                want = _expected_day(entries, u.day)
                assert (u.requests, u.prompt_tokens, u.failed) == (want["requests"], want["prompt"], want["failed"])
                assert u.cost_usd == pytest.approx(want["cost"]) and u.degraded_share * u.requests == pytest.approx(
                    want["degraded"])
            return rows

        before = check()
        month = sum(e.cost_usd for e in entries)
        assert ledger.spent_this_month_usd(now) == pytest.approx(month)
        assert ledger.spent_today_usd(now) == pytest.approx(
            sum(e.cost_usd for e in entries if e.ts >= utc(2026, 11, 10)))
        # Retention: rows older than 5 days go; budgets and usage stay as they were.
        assert ledger.prune(utc(2026, 11, 6)) == sum(e.ts < utc(2026, 11, 6) for e in entries)
        after = check()
        assert ledger.spent_this_month_usd(now) == pytest.approx(month)
        for b, a in zip(before, after):  # exact medians became histogram medians: within a bucket (5%)
            assert (a.p50_latency_ms is None) == (b.p50_latency_ms is None)
            if b.p50_latency_ms is not None:
                assert a.p50_latency_ms == pytest.approx(b.p50_latency_ms, rel=0.05, abs=1.0)
        assert [u.top_reasons for u in after] == [u.top_reasons for u in before]


def test_a_ledger_from_before_the_aggregates_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as c:  # schema version 1: rows only
        c.executescript("""CREATE TABLE requests (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, ts REAL NOT NULL,
            tier TEXT NOT NULL, backend TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, latency_ms REAL NOT NULL,
            outcome TEXT NOT NULL, reasons TEXT NOT NULL, degraded INTEGER NOT NULL);
            CREATE INDEX requests_ts ON requests (ts); PRAGMA user_version = 1;""")
        c.execute("INSERT INTO requests VALUES (1, 'old', ?, 'cloud', 'b', 'm', 1, 2, 0.25, 10.0, 'ok', '[\"X\"]', 0)",
                  (utc(2026, 11, 3),))
    with Ledger(path) as ledger:
        assert ledger.spent_this_month_usd(utc(2026, 11, 20)) == pytest.approx(0.25)
        assert ledger.usage_by_day(days=1, now=utc(2026, 11, 3, 5))[0].top_reasons == [("X", 1)]
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.timeout(300)
def test_kill_9_at_a_million_rows_leaves_the_budget_equal_to_the_committed_rows(tmp_path: Path) -> None:
    """A million rows of history, then a writer killed mid-stream: the budget read after
    recovery (from the aggregates) equals the sum over the rows that committed."""
    db, ack = tmp_path / "ledger.sqlite3", tmp_path / "acks"
    start = utc(2027, 1, 1)  # the same month as the child's rows (from 2027-01-15)
    with Ledger(db) as ledger:
        ledger.record_many(LedgerEntry(f"h{i}", start + i, "cloud", "b", "m", 1, 1, 0.0001, 5.0)
                           for i in range(1_000_000))
    _kill_writer_after(db, ack, 100)
    with sqlite3.connect(db) as c:
        rows_total = c.execute("SELECT SUM(cost_usd), COUNT(*) FROM requests").fetchone()
    with Ledger(db) as ledger:
        assert rows_total[1] >= 1_000_100
        assert ledger.spent_this_month_usd(1_800_000_000.0) == pytest.approx(rows_total[0], rel=1e-9)
