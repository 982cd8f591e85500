"""Does the cost of a request stay flat as history grows?

For ledgers of 10k, 100k and 1M rows spread over the current month (written with the
ledger's own schema and aggregates, `Ledger.record_many`), the per-request cost of the
routing path the daemon runs for every request with a budget set and a priced remote
candidate: the plan stage (edge.pipeline.planning: PII scan, decide, cost gate with the
budget check, weigh) on an engine built in-process. Beside it, what the budget read
cost before the aggregates: a SUM over the month's raw rows. Then `edge usage` (seven
days) at 1M rows, the database size per million rows before and after retention
deletes the raw rows, and the answer cache's semantic lookup at 10k and 100k entries.

    .venv/bin/python benchmarks/scale.py            # about 2 minutes here
    .venv/bin/python benchmarks/scale.py --quick    # 10k and 100k rows only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.answer_cache import AnswerCache, CachedAnswer, CacheQuery  # noqa: E402
from edge.config import load_settings  # noqa: E402
from edge.engine import Engine  # noqa: E402
from edge.ledger import Ledger, LedgerEntry, utc_month_start  # noqa: E402
from edge.runtime import Injected  # noqa: E402
from edge.tracing import NOOP  # noqa: E402
from edge.validation import Draft, validate  # noqa: E402


def fill(ledger: Ledger, rows: int, now: float) -> None:
    """`rows` answers spread evenly over the month so far, in batches of 100k."""
    start = utc_month_start(now)
    step = (now - start) / rows
    for first in range(0, rows, 100_000):
        ledger.record_many(LedgerEntry(f"r{i}", start + i * step, "cloud" if i % 3 else "local", "cloud", "m",
                                       20, 40, 0.00001 if i % 3 else 0.0, 120.0 + i % 500, "ok", ["CHAIN"])
                           for i in range(first, min(rows, first + 100_000)))


def ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 4)


async def plan_cost(tmp: Path, ledger_path: Path, calls: int) -> float:
    """p50 seconds of the plan stage with a daily budget and a priced cloud candidate."""
    cfg = tmp / "edge.toml"
    cfg.write_text(f"""
ledger_path = "{ledger_path}"
[local]
default_model = "local"
[[local.models]]
name = "local"
backend = "fake"
[routing]
strategy = "chain"
[cost]
daily_budget_usd = 1000.0
monthly_budget_usd = 100000.0
[[cost.prices]]
provider = "openai"
model = "m"
input_per_mtok = 1.0
output_per_mtok = 2.0
[[cloud]]
name = "cloud"
base_url = "http://cloud.invalid"
model = "m"
""")
    settings = load_settings(cfg, environ={})
    engine = Engine(settings, Injected())
    await engine.start()
    try:
        req = validate(Draft(messages=[("user", "What is the capital of France?")]), settings.limits,
                       request_id="b", time_remaining=None)
        plan = await engine.planner.plan(req, NOOP)  # the first check of a month loads it (on a thread)
        assert [c.name for c in plan.chain] == ["cloud", "local"], plan.chain  # the budget allowed the cloud
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await engine.planner.plan(req, NOOP)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)
    finally:
        await engine.close()


def cache_lookup(tmp: Path, entries: int, lookups: int) -> float:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((entries, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache = AnswerCache(tmp / f"cache-{entries}.sqlite3", ttl_s=86_400, max_entries=entries + 10, threshold=0.95)
    try:
        answer = CachedAnswer(text="x", finish_reason="stop", prompt_tokens=1, completion_tokens=1, tier="cloud",
                              backend="cloud", model="m", created=time.time())
        for i in range(entries):
            cache.store(CacheQuery.build(tenant="", scope="any", messages=[("user", f"question {i}")], params={}),
                        answer, vector=vectors[i])
        q = CacheQuery.build(tenant="", scope="any", messages=[("user", "a new question")], params={})
        probe = rng.standard_normal(384).astype(np.float32)
        probe /= np.linalg.norm(probe)
        samples = []
        for _ in range(lookups):
            t0 = time.perf_counter()
            cache.lookup(q, vector=probe)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)
    finally:
        cache.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k and 100k rows, 10k cache entries")
    args = ap.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    now = time.time()
    out: dict[str, object] = {"benchmark": "scale", "budget_check_ms_p50": {}, "raw_sum_budget_read_ms_p50": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for rows in sizes:
            path = tmp / f"ledger-{rows}.sqlite3"
            with Ledger(path) as ledger:
                fill(ledger, rows, now)
                month = utc_month_start(now)
                raw = []
                for _ in range(5 if rows >= 1_000_000 else 20):
                    t0 = time.perf_counter()
                    ledger.spent_usd(month)  # what every budget check read before the aggregates
                    raw.append(time.perf_counter() - t0)
                out["raw_sum_budget_read_ms_p50"][str(rows)] = ms(raw)  # type: ignore[index]
            out["budget_check_ms_p50"][str(rows)] = ms([asyncio.run(plan_cost(tmp, path, 2000))])  # type: ignore[index]
            if rows == sizes[-1]:
                with Ledger(path) as ledger:
                    t0 = time.perf_counter()
                    ledger.usage_by_day(7, now)
                    out[f"usage_s_{rows // 1_000_000}m" if rows >= 1_000_000 else f"usage_s_{rows // 1000}k"] = round(
                        time.perf_counter() - t0, 3)
                    before = path.stat().st_size
                    ledger.prune(now + 1)  # retention: every raw row goes, the aggregates stay
                    with ledger._lock:  # noqa: SLF001 - VACUUM here only to measure what stays
                        ledger._conn.execute("VACUUM")  # noqa: SLF001
                    spent_after = ledger.spent_this_month_usd(now)
                after = path.stat().st_size
                out["db_bytes_per_million_rows"] = round(before * 1_000_000 / rows)
                out["db_bytes_after_retention"] = after
                out["budget_after_retention_usd"] = round(spent_after, 6)
        first, last = out["budget_check_ms_p50"][str(sizes[0])], out["budget_check_ms_p50"][str(sizes[-1])]  # type: ignore[index]
        out["budget_check_growth"] = round(last / first, 3)
        out["cache_lookup_ms_p50"] = {str(n): ms([cache_lookup(tmp, n, 200)])
                                      for n in ([10_000] if args.quick else [10_000, 100_000])}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
