"""How much does each way a remote backend can fail cost a request?

Runs edge (the shipped fake backend as the local tier, so the local model's speed
is not what is measured) with two OpenAI-compatible loopback providers: `lan` (the
on-prem tier, where each scenario's fault is injected) and `cloud` (healthy, the
next in the chain). The providers are edge.testing.providers emulators on this
machine, not real services: say so when quoting the figures.

For each scenario, N requests in a row; added latency is each request's latency
minus the healthy scenario's median. Then: recovery time from the provider's
return until traffic reaches it again, and the gateway overhead of edge over
sending the same request straight to the provider with httpx.

    .venv/bin/python benchmarks/failover.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import pct, start_daemon  # noqa: E402

from edge.client import Client  # noqa: E402
from edge.testing.providers import Fault, ProviderServer, continuing  # noqa: E402

REPLY = "Short answers keep this benchmark about failover, not about generation speed."
PROBE_INTERVAL_S = 0.5

SCENARIOS = [
    ("healthy", None, False),
    ("dead", Fault("refuse"), False),
    ("blackholed", Fault("hang"), False),
    ("flapping", Fault("flap"), False),
    ("rate_limited", Fault("status", status=429, retry_after=1.0), False),
    ("stream_cut", Fault("cut_stream", after_events=3), True),
]


def config(lan: ProviderServer, cloud: ProviderServer) -> str:
    return f"""
log_level = "warning"
[server]
listen = "127.0.0.1:0"
[local]
default_model = "fake"
[[local.models]]
name = "fake"
backend = "fake"
fake_reply = "local answer"
[routing]
strategy = "chain"   # every request goes remote first: failover is what is measured
[resilience]
backoff_base_s = 0.02
breaker_failures = 3
breaker_cooldown_s = 2.0
probe_interval_s = {PROBE_INTERVAL_S}
[[onprem]]
name = "lan"
base_url = "{lan.base_url}"
model = "m"
connect_timeout_s = 0.5
first_byte_timeout_s = 0.5
idle_timeout_s = 0.5
[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "m"
connect_timeout_s = 0.5
first_byte_timeout_s = 0.5
idle_timeout_s = 0.5
"""


def one(client: Client, stream: bool) -> tuple[float, str, bool]:
    t0 = time.perf_counter()
    try:
        if stream:
            final = list(client.stream("hello", timeout=10))[-1].final
        else:
            final = client.ask("hello", timeout=10)
    except Exception:  # noqa: BLE001 - a failed request is what this counts
        return (time.perf_counter() - t0) * 1000, "", False
    return (time.perf_counter() - t0) * 1000, final.served_by.backend, final.text in (REPLY, "local answer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 30 if args.quick else 100

    # Both continue a partial answer the way a model would, so a stream cut mid-way
    # and continued elsewhere still ends as the one whole REPLY.
    lan = ProviderServer("openai", reply=continuing(REPLY)).start()
    cloud = ProviderServer("openai", reply=continuing(REPLY)).start()
    out: dict[str, object] = {"benchmark": "failover", "providers": "loopback emulators (edge.testing.providers)",
                              "requests_per_scenario": n, "probe_interval_s": PROBE_INTERVAL_S}
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = start_daemon(config(lan, cloud), Path(tmp))
        client = Client(target)
        try:
            for _ in range(5):
                one(client, False)  # warm connections
            healthy_p50 = 0.0
            scenarios = []
            for name, fault, stream in SCENARIOS:
                lan.set_fault(fault)
                # Fresh breaker state per scenario: wait for the previous one's to close.
                lat, ok, served = [], 0, []
                for _ in range(n):
                    ms, backend, good = one(client, stream)
                    lat.append(ms)
                    ok += good
                    served.append(backend)
                if name == "healthy":
                    healthy_p50 = statistics.median(lat)
                added = [x - healthy_p50 for x in lat]
                # Requests after the breaker opened (served elsewhere, not the first failures).
                after_open = added[5:]
                scenarios.append({
                    "name": name, "requests": n, "succeeded": ok,
                    "added_latency_ms_p50": round(statistics.median(added), 2),
                    "added_latency_ms_p99": round(pct(added, 0.99), 2),
                    "added_latency_ms_p50_after_first_5": round(statistics.median(after_open), 2),
                    "served_by": {b: served.count(b) for b in sorted(set(served))},
                })
                lan.set_fault(None)
                # Let the lan breaker close again (probe + a success) before the next scenario.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and one(client, False)[1] != "lan":
                    time.sleep(0.05)
            out["healthy_latency_ms_p50"] = round(healthy_p50, 2)
            out["scenarios"] = scenarios

            # Recovery: kill the provider, let the breaker open, bring it back, time until traffic returns.
            lan.stop()
            for _ in range(6):
                one(client, False)
            lan.start()
            t0 = time.monotonic()
            while one(client, False)[1] != "lan":
                time.sleep(0.02)
            out["recovery_s"] = round(time.monotonic() - t0, 3)

            # Gateway overhead: edge -> healthy provider, against httpx sending the provider
            # the request edge sends (a stream, read to its end).
            body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 256,
                    "stream": True, "stream_options": {"include_usage": True}}
            direct, via = [], []
            with httpx.Client() as http:
                for i in range(n):
                    for side in (("direct", "edge") if i % 2 == 0 else ("edge", "direct")):
                        t = time.perf_counter()
                        if side == "direct":
                            with http.stream("POST", f"{lan.base_url}/chat/completions", json=body) as resp:
                                resp.raise_for_status()
                                for _line in resp.iter_lines():
                                    pass
                            direct.append((time.perf_counter() - t) * 1000)
                        else:
                            client.ask("hello", max_tokens=256, timeout=10)
                            via.append((time.perf_counter() - t) * 1000)
            out["direct_httpx_ms_p50"] = round(statistics.median(direct), 2)
            out["via_edge_ms_p50"] = round(statistics.median(via), 2)
            out["gateway_overhead_ms_p50"] = round(statistics.median(via) - statistics.median(direct), 2)
        finally:
            client.close()
            proc.terminate()
            proc.wait(30)
            lan.stop()
            cloud.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
