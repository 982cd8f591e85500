"""What happens when more work arrives than the local model can do?

Runs `edge serve` with the real default model (smart routing: a request goes remote
when `max_queue_depth` requests already wait for the local model) and a loopback
OpenAI-compatible provider as the on-prem tier (edge.testing.providers, answering
after a few ms per word: simulated, not a real server). Measures the local capacity
first (sequential requests: 1 / median service time), then offers open-loop load
(evenly spaced arrivals) at 1x, 2x and 4x that capacity, first with the remote tier
up, then with it stopped. Prints one JSON object with, per level: offered rate,
p50/p99 latency, errors, the share served remotely; and for the remote-down phase
how fast excess is refused (RESOURCE_EXHAUSTED) and whether health stayed SERVING.

    .venv/bin/python benchmarks/overload.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import start_daemon  # noqa: E402

from edge.bench import capacity  # noqa: E402
from edge.client import Client  # noqa: E402
from edge.testing.providers import ProviderServer  # noqa: E402

PROMPT = capacity.PROMPT
MAX_TOKENS = 24


def offer(target: str, rate: float, duration_s: float) -> dict[str, object]:
    """Evenly spaced arrivals at `rate` per second for `duration_s` (edge.bench.capacity.offer)."""
    return capacity.offer(target, rate, duration_s, "auto", timeout_s=60, max_tokens=MAX_TOKENS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    duration = 8.0 if args.quick else 30.0

    lan = ProviderServer("openai", reply="A calm and wide sea rolls under a pale sky today.",
                         token_delay_s=0.005).start()
    cfg = f"""
log_level = "warning"
[server]
listen = "127.0.0.1:0"
[local]
queue_size = 2
[routing]
strategy = "smart"
classifier = false          # load, not difficulty, is under test
profile_on_start = false
max_queue_depth = 1
[resilience]
breaker_failures = 2
probe_interval_s = 600      # the remote-down phase must stay down
[[onprem]]
name = "lan"
base_url = "{lan.base_url}"
model = "m"
connect_timeout_s = 0.3
"""
    out: dict[str, object] = {"benchmark": "overload", "remote": "loopback emulator (edge.testing.providers)",
                              "prompt": PROMPT, "max_tokens": MAX_TOKENS, "seconds_per_level": duration}
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = start_daemon(cfg, Path(tmp))
        try:
            with Client(target) as c:
                for _ in range(2):
                    c.ask(PROMPT, max_tokens=MAX_TOKENS, temperature=0, preference="local_only")
                service = [c.ask(PROMPT, max_tokens=MAX_TOKENS, temperature=0, preference="local_only").timings.total_ms
                           for _ in range(5)]
            local_rps = 1000 / statistics.median(service)
            out["local_service_ms_p50"] = round(statistics.median(service), 1)
            out["local_capacity_rps"] = round(local_rps, 2)
            levels = []
            for phase in ("remote_up", "remote_down"):
                if phase == "remote_down":
                    lan.stop()
                for k in (1, 2, 4):
                    level = offer(target, k * local_rps, duration)
                    levels.append({"phase": phase, "load": k, **level})
                    time.sleep(1.0)
            with grpc.insecure_channel(target) as ch:
                health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            out["levels"] = levels
            out["healthy_after"] = health == health_pb2.HealthCheckResponse.SERVING
            up = {lv["load"]: lv for lv in levels if lv["phase"] == "remote_up"}
            out["targets"] = {
                "remote_up_p99_4x_over_1x": round(up[4]["p99_ms"] / up[1]["p99_ms"], 2),
                "remote_up_p99_4x_le_2x_p99_1x": up[4]["p99_ms"] <= 2 * up[1]["p99_ms"],
                "remote_up_zero_errors": all(lv["errors"] == 0 for lv in up.values()),
            }
        finally:
            proc.terminate()
            proc.wait(30)
            lan.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
