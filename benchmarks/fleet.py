"""A fleet on one NATS JetStream server: N boxes sharing one daily budget.

Each box is a whole edge engine (the fake local model, an in-process OpenAI-compatible
provider priced so the budget binds) in this one process, all against a real
`nats-server` (from the venv's bin) on loopback: what is simulated is the machines and
the network between them, not the protocol. Four measurements:

* overspend: N boxes in a closed loop until the budget is spent; the fleet's remote
  spend minus the budget (`overspend_bound_usd`: the sum of leases that could be
  outstanding at worst, N x lease), and what the boxes leased (leases adapt to each
  box's spend rate, up to `lease_usd`);
* added latency: one box's request latency (p50, p99) with the fleet on and off, the two
  runs interleaved; nothing on the request path waits for the server, so the target is
  +0.1 ms or less at p50;
* reconcile: a box cut off from the server for `--partition-s` seconds keeps serving
  (from its lease) and, when the server is back, how long until every spend event it
  queued is on the stream;
* shared cache: one box answers distinct prompts remotely; how long until each answer
  is in another box's cache, and how many of the same prompts the other box then
  answers from its cache without asking its provider.

    .venv/bin/python benchmarks/fleet.py --boxes 3           # 30 s partition
    .venv/bin/python benchmarks/fleet.py --quick              # 5 s partition, fewer requests
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edge.config import load_settings  # noqa: E402
from edge.engine import Engine  # noqa: E402
from edge.pipeline.admission import Arrival  # noqa: E402
from edge.runtime import Injected  # noqa: E402
from edge.testing.nats_server import NatsServer  # noqa: E402
from edge.testing.transport import Hosts, ProviderTransport  # noqa: E402
from edge.validation import Draft  # noqa: E402

REPLY = "one two three four five six seven eight nine ten"
PRICE_OUT = 100.0  # $ per million answer tokens: 10 tokens = $0.001


def config(tmp: Path, box: str, url: str | None, budget: float, lease: float, fleet_name: str,
           cache: bool = False) -> Path:
    fleet = f"""
[fleet]
servers = ["{url}"]
name = "{fleet_name}"
box = "{box}"
heartbeat_s = 1
connect_timeout_s = 0.5
daily_budget_usd = {budget}
lease_usd = {lease}
""" if url else ""
    path = tmp / f"{box}.toml"
    path.write_text(f"""
ledger_path = "{tmp / (box + '.ledger.sqlite3')}"
[local]
default_model = "fake"
[[local.models]]
name = "fake"
backend = "fake"
fake_reply = "local answer"
[routing]
strategy = "chain"
classifier = false
profile_on_start = false
device_load = false
[calibration]
enabled = false
[cache]
enabled = {'true' if cache else 'false'}
semantic = false
[cost]
[[cost.prices]]
provider = "openai"
model = "test-model"
input_per_mtok = 1.0
output_per_mtok = {PRICE_OUT}
[[cloud]]
name = "cloud"
base_url = "http://cloud"
model = "test-model"
{fleet}""")
    return path


async def ask(engine: Engine, i: int, text: str = "question {i}"):  # type: ignore[no-untyped-def]
    result = None
    async for event in engine.serve(Draft(messages=[("user", text.format(i=i))], max_tokens=10),
                                    Arrival(f"r{i}-{time.monotonic_ns()}", "bench", stream=False)):
        result = event
    return result


async def box(tmp: Path, name: str, url: str | None, budget: float, lease: float, fleet: str = "bench", *,
              cache: bool = False, provider: ProviderTransport | None = None) -> Engine:
    """One box; each measurement is its own fleet (a day's limit is set by its first lease)."""
    engine = Engine(load_settings(config(tmp, name, url, budget, lease, fleet, cache), environ={}),
                    Injected(transport=Hosts({"cloud": provider or ProviderTransport("openai", reply=REPLY)})))
    await engine.start()
    return engine


async def until(predicate, timeout: float, poll_s: float = 0.02) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("condition not met")
        await asyncio.sleep(poll_s)
    return time.monotonic() - t0


async def overspend(tmp: Path, url: str, n: int, budget: float, lease: float, rounds: int) -> dict:
    boxes = [await box(tmp, f"box{i}", url, budget, lease, "over") for i in range(n)]
    try:
        await asyncio.gather(*(until(lambda e=e: e.runtime.fleet.snapshot().connected, 10) for e in boxes))
        spent = 0.0
        remote = 0
        for r in range(rounds):
            results = await asyncio.gather(*(ask(e, r * n + j) for j, e in enumerate(boxes)))
            spent += sum(x.cost_usd for x in results if x.backend == "cloud")
            remote += sum(1 for x in results if x.backend == "cloud")
            await asyncio.sleep(0.01)
        leases = [e.runtime.cost_gate.fleet for e in boxes]
        return {"boxes": n, "budget_usd": budget, "lease_usd": lease, "remote_answers": remote,
                "spent_usd": round(spent, 6), "overspend_usd": round(max(0.0, spent - budget), 6),
                "overspend_bound_usd": round(n * lease, 6), "leased_usd": round(sum(x.leased for x in leases), 6),
                "last_lease_sizes_usd": [round(x.lease_size, 6) for x in leases]}
    finally:
        for e in boxes:
            await e.close()


async def latency(tmp: Path, url: str, pairs: int) -> dict:
    on = await box(tmp, "on", url, 1e6, 1e3, "lat")  # a budget that never binds: every request goes remote
    off = await box(tmp, "off", None, 0, 0)
    try:
        await until(lambda: on.runtime.fleet.snapshot().connected, 10)
        for _ in range(20):  # warm both
            await ask(on, 0), await ask(off, 0)
        t_on, t_off = [], []
        for i in range(pairs):
            for engine, out in ((on, t_on), (off, t_off)) if i % 2 == 0 else ((off, t_off), (on, t_on)):
                t0 = time.perf_counter()
                await ask(engine, i)
                out.append((time.perf_counter() - t0) * 1000)
        q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1]  # noqa: E731
        return {"p50_ms_fleet_on": round(statistics.median(t_on), 3), "p50_ms_fleet_off": round(statistics.median(t_off), 3),
                "added_latency_ms_p50": round(statistics.median(t_on) - statistics.median(t_off), 3),
                "added_latency_ms_p99": round(q(t_on, 99) - q(t_off, 99), 3), "pairs": pairs}
    finally:
        await on.close()
        await off.close()


async def reconcile(tmp: Path, server: NatsServer, partition_s: float) -> dict:
    engine = await box(tmp, "cut", server.url, 1.0, 0.01, "cut")
    try:
        await until(lambda: engine.runtime.fleet.snapshot().connected, 10)
        await ask(engine, 0)
        await until(lambda: engine.runtime.cost_gate.fleet.lease_left > 0, 10)
        server.stop()
        await until(lambda: not engine.runtime.fleet.snapshot().connected, 20)
        served = remote = 0
        t_end = time.monotonic() + partition_s
        while time.monotonic() < t_end:
            r = await ask(engine, served)
            served += 1
            remote += r.backend == "cloud"
            await asyncio.sleep(0.05)
        pending = engine.runtime.fleet.snapshot().pending
        server.start()
        t = await until(lambda: engine.runtime.fleet.snapshot().connected
                        and engine.runtime.fleet.snapshot().pending == 0, 60)
        return {"partition_s": partition_s, "served_while_cut_off": served, "remote_while_cut_off": remote,
                "events_queued": pending, "reconcile_s": round(t, 2)}
    finally:
        await engine.close()


async def shared_cache(tmp: Path, url: str, n: int) -> dict:
    maker, other = ProviderTransport("openai", reply=REPLY), ProviderTransport("openai", reply=REPLY)
    a = await box(tmp, "maker", url, 0, 0, "cache", cache=True, provider=maker)
    b = await box(tmp, "other", url, 0, 0, "cache", cache=True, provider=other)
    try:
        await until(lambda: a.runtime.fleet.snapshot().connected and b.runtime.fleet.snapshot().connected, 10)
        await asyncio.sleep(1.5)  # both boxes follow the stream (their first read is done)
        lags = []
        for i in range(n):
            before = b.runtime.fleet.snapshot().cache_received
            await ask(a, i, "what is the opening time of store {i}?")
            lags.append(await until(lambda: b.runtime.fleet.snapshot().cache_received > before, 10, 0.0005) * 1000)
        hits = sum([(await ask(b, i, "what is the opening time of store {i}?")).backend == "cache"
                    for i in range(n)])
        return {"entries": n, "propagation_ms_p50": round(statistics.median(lags), 2),
                "propagation_ms_max": round(max(lags), 2), "hits_on_other_box": hits,
                "other_box_provider_calls": len(other.requests)}
    finally:
        await a.close()
        await b.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=3, help="boxes sharing the budget")
    ap.add_argument("--quick", action="store_true", help="a 5 s partition and fewer requests")
    ap.add_argument("--partition-s", type=float, default=None, help="seconds a box is cut off (default 30, quick 5)")
    args = ap.parse_args()
    partition = args.partition_s or (5.0 if args.quick else 30.0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = NatsServer(tmp).start()
        try:
            out = {"benchmark": "fleet", "server": "nats-server (JetStream) on loopback, boxes in one process"}
            out["overspend"] = asyncio.run(overspend(tmp, server.url, args.boxes, 0.02, 0.004,
                                                     rounds=20 if args.quick else 60))
            out["latency"] = asyncio.run(latency(tmp, server.url, 100 if args.quick else 400))
            out["partition"] = asyncio.run(reconcile(tmp, server, partition))
            out["shared_cache"] = asyncio.run(shared_cache(tmp, server.url, 50 if args.quick else 200))
        finally:
            server.stop()
    flat = {"overspend_usd": out["overspend"]["overspend_usd"],
            "overspend_bound_usd": out["overspend"]["overspend_bound_usd"],
            "added_latency_ms_p50": out["latency"]["added_latency_ms_p50"],
            "added_latency_ms_p99": out["latency"]["added_latency_ms_p99"],
            "reconcile_s": out["partition"]["reconcile_s"],
            "cache_propagation_ms_p50": out["shared_cache"]["propagation_ms_p50"]}
    print(json.dumps({**flat, **out}, indent=2))


if __name__ == "__main__":
    main()
