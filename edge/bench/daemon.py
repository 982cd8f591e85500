"""The daemon itself on this box: streamed tok/s and TTFT against llama-cpp-python called
directly in the same run, and what one gRPC round trip costs.

The same prompt, max_tokens, threads and model are streamed through `edge serve` (over
gRPC, LOCAL_ONLY) and through `Llama.create_chat_completion` in this process,
interleaved pair by pair with the order alternating, each run after a short pause so the
other side's llama.cpp threads have stopped spinning (benchmarks/local_overhead.py adds a
third side, a minimal gRPC server, on the same functions). The round trip is a unary
Generate answered by the daemon's built-in fake model: door, admission, plan, chain,
ledger row and the loopback socket, with no model time in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge.bench.stats import summarize, timed_ms
from edge.bench.targets import ModelTarget

__all__ = ["PROMPT", "NAMES", "RTT_MODEL", "QUEUE_SIZE", "bench_config", "stream_daemon", "stream_direct", "compare_streams",
           "round_trips"]

PROMPT = "Write a very long story about a dragon named {name}."
NAMES = ["Ash", "Brim", "Cinder", "Dusk", "Ember", "Flint", "Gale", "Hex", "Ivy", "Jet", "Kiln", "Lux", "Moss",
         "Nox", "Onyx", "Pyre", "Quill", "Rune", "Soot", "Thorn", "Umber", "Vale", "Wisp", "Xyl", "Yew", "Zephyr"]
RTT_MODEL = "rtt"       # the daemon's fake model: answers at once, so a round trip holds no model time
BENCH_MODEL = "bench"   # the measured GGUF, by path: no primer, so the daemon and direct see the same prompt
QUEUE_SIZE = 4          # requests that may wait for the local model; the capacity runs fill it


def bench_config(model: ModelTarget, *, threads: int, n_ctx: int, remote_url: str, queue_size: int = QUEUE_SIZE,
                 n_gpu_layers: int = 0) -> str:
    """The daemon the bench runs: the model by path, a fake model for round trips, and a
    loopback OpenAI-compatible emulator as the on-prem tier (the capacity section's
    overflow); nothing in the background (no start-up profile, no shadow calls)."""
    return f"""
log_level = "warning"
[server]
listen = "127.0.0.1:0"
[local]
default_model = "{BENCH_MODEL}"
n_threads = {threads}
n_ctx = {n_ctx}
n_gpu_layers = {n_gpu_layers}
queue_size = {queue_size}
[[local.models]]
name = "{BENCH_MODEL}"
path = "{model.path}"
chat_format = "{model.chat_format}"
[[local.models]]
name = "{RTT_MODEL}"
backend = "fake"
fake_reply = "ok"
[routing]
strategy = "smart"
classifier = false          # load, not difficulty, decides in the capacity runs
profile_on_start = false
max_queue_depth = 1
[calibration]
enabled = false
shadow_rate = 0
[resilience]
breaker_failures = 2
probe_interval_s = 600      # once the remote is stopped it stays down
[[onprem]]
name = "lan"
base_url = "{remote_url}"
model = "m"
connect_timeout_s = 0.3
"""


def stream_daemon(client: Any, prompt: str, max_tokens: int, **kw: Any) -> dict[str, Any]:
    """One streamed request over gRPC: TTFT, the text, tokens (as the daemon's usage
    reports them; 0 from a server that reports none), the decode rate the client saw
    ((tokens - 1) / (last text - first text)), and when the first and last text arrived
    (perf_counter)."""
    t0 = time.perf_counter()
    first = last = None
    final = None
    for msg in client.stream(prompt, max_tokens=max_tokens, temperature=0, timeout=600, **kw):
        now = time.perf_counter()
        if msg.WhichOneof("event") == "delta":
            first = first or now
            last = now
        elif msg.WhichOneof("event") == "final":
            final = msg.final
    if final is None or first is None or last is None:
        raise RuntimeError("the daemon's stream ended without text or a final message")
    n = final.usage.completion_tokens
    return {"ttft_ms": (first - t0) * 1000, "tokens": n, "text": final.text, "first": first, "last": last,
            "decode_tps": (n - 1) / (last - first) if n > 1 and last > first else 0.0}


def stream_direct(llm: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    """The same through llama-cpp-python in this process (its own chat template and stream)."""
    t0 = time.perf_counter()
    first = last = None
    parts = []
    for chunk in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                            temperature=0, stream=True):
        now = time.perf_counter()
        if content := chunk["choices"][0]["delta"].get("content"):
            first = first or now
            last = now
            parts.append(content)
    if first is None or last is None:
        raise RuntimeError("llama-cpp-python streamed no text")
    text = "".join(parts)
    n = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    return {"ttft_ms": (first - t0) * 1000, "tokens": n, "text": text, "first": first, "last": last,
            "decode_tps": (n - 1) / (last - first) if n > 1 and last > first else 0.0}


def _pairs(sides: dict[str, Callable[[str, int], dict[str, Any]]], n: int, max_tokens: int, deadline: float,
           settle_s: float, tag: str, progress: Callable[[str], None]) -> list[dict[str, dict[str, Any]]]:
    """`n` rounds (at least one) of the same fresh prompt on every side, order alternating."""
    names = list(sides)
    out: list[dict[str, dict[str, Any]]] = []
    for i in range(n):
        if out and time.perf_counter() > deadline:
            break
        prompt = PROMPT.format(name=f"{NAMES[i % len(NAMES)]}{tag}{i}")
        pair = {}
        for side in (names if i % 2 == 0 else names[::-1]):
            time.sleep(settle_s)  # the other side's llama.cpp threads stop spinning
            pair[side] = sides[side](prompt, max_tokens)
        out.append(pair)
        progress(f"{tag} pair {i + 1}/{n}")
    return out


def compare_streams(client: Any, llm: Any, *, max_tokens: int, pairs: int, ttft_pairs: int, deadline: float,
                    settle_s: float = 0.2, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Decode rate and TTFT through the daemon vs direct, paired; the TTFT pairs get the
    last third of the time to `deadline`."""
    sides = {"direct": lambda p, n: stream_direct(llm, p, n),
             "daemon": lambda p, n: stream_daemon(client, p, n, preference="local_only")}
    for side in sides.values():  # warm every path once (page cache, first-call allocations)
        side(PROMPT.format(name="Warm"), 8)
    now = time.perf_counter()
    long_runs = _pairs(sides, pairs, max_tokens, now + (deadline - now) * 0.66, settle_s, "stream", progress)
    short_runs = _pairs(sides, ttft_pairs, 2, deadline, settle_s, "ttft", progress)
    direct_tps = [p["direct"]["decode_tps"] for p in long_runs]
    daemon_tps = [p["daemon"]["decode_tps"] for p in long_runs]
    ttft = {side: [p[side]["ttft_ms"] for p in short_runs] for side in sides}
    d, m = summarize(direct_tps, 1), summarize(daemon_tps, 1)
    return {
        "max_tokens": max_tokens, "pairs": len(long_runs), "ttft_pairs": len(short_runs),
        "direct_tps": d, "daemon_tps": m,
        "ratio": round(m["median"] / d["median"], 3) if d and m and d["median"] else None,
        "ratio_paired": summarize([b / a for a, b in zip(direct_tps, daemon_tps) if a > 0], 3),
        "direct_ttft_ms": summarize(ttft["direct"], 1), "daemon_ttft_ms": summarize(ttft["daemon"], 1),
        "ttft_overhead_ms": summarize([b - a for a, b in zip(ttft["direct"], ttft["daemon"])], 2),
        "tokens_per_run": sorted({p["daemon"]["tokens"] for p in long_runs}),
        "outputs_identical": all(p["direct"]["text"] == p["daemon"]["text"] for p in long_runs),
    }


def round_trips(client: Any, target: str, *, calls: int, deadline: float) -> dict[str, Any]:
    """Unary Generate to the fake model, and the health check, over gRPC on loopback (ms)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for _ in range(5):  # warm the channel and the first-call paths
        client.ask("ping", model=RTT_MODEL, max_tokens=4, timeout=10)
    now = time.perf_counter()
    generate = timed_ms(lambda: client.ask("ping", model=RTT_MODEL, max_tokens=4, timeout=10), calls,
                        now + (deadline - now) * 0.8)
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        health = timed_ms(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=5), calls, deadline)
    return {"generate_ms": summarize(generate, 3), "health_ms": summarize(health, 3),
            "what": "unary Generate answered by the daemon's fake model (door, routing, ledger, loopback), "
                    "and a health check: no model time in either"}
