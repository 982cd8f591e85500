"""Capacity: the highest request rate the local tier holds with p99 under a stated limit,
and what happens past it with a remote tier and without one.

Open-loop load (evenly spaced arrivals, each answered or refused on its own, the way
independent clients arrive) is offered to the running daemon. First the local tier
alone (LOCAL_ONLY) at rising fractions of its sequential capacity (1 / median service
time): the highest level whose p99 stays under the limit, with no request refused, is
the capacity. Then twice the capacity, AUTO, with the loopback OpenAI-compatible
emulator (edge.testing.providers, answering after a few ms per word: simulated, not a
real server) standing in for an on-prem tier, and again once it is stopped:
overflow goes remote while it is up, and is refused at once (RESOURCE_EXHAUSTED)
when it is down, while health stays SERVING. benchmarks/overload.py runs the same
functions with longer levels.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from edge.bench.stats import pct

__all__ = ["PROMPT", "MAX_TOKENS", "LADDER", "offer", "service_time_ms", "sequential_capacity", "request_timeout",
           "too_short", "capacity_ladder", "past_capacity"]

PROMPT = "Write one sentence about the sea."
MAX_TOKENS = 16
LADDER = (0.5, 0.75, 1.0, 1.25)  # fractions of the sequential capacity, in order


async def _offer(target: str, rate: float, duration_s: float, preference: str, timeout_s: float,
                 max_tokens: int) -> list[tuple[float, str, str]]:
    from edge.client import AsyncClient, tier_name

    import grpc

    results: list[tuple[float, str, str]] = []  # (latency ms, outcome, tier)

    async def one(client: AsyncClient) -> None:
        t0 = time.perf_counter()
        try:
            r = await client.ask(PROMPT, max_tokens=max_tokens, temperature=0, timeout=timeout_s,
                                 preference=preference)
            results.append(((time.perf_counter() - t0) * 1000, "ok", tier_name(r.served_by.tier)))
        except grpc.aio.AioRpcError as exc:
            results.append(((time.perf_counter() - t0) * 1000, exc.code().name, ""))

    async with AsyncClient(target) as client:
        tasks = []
        n = max(1, int(rate * duration_s))
        t_start = time.perf_counter()
        for i in range(n):
            delay = t_start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client)))
        await asyncio.gather(*tasks)
    return results


def offer(target: str, rate: float, duration_s: float, preference: str = "auto", timeout_s: float = 60.0,
          max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    """Evenly spaced arrivals at `rate` per second for `duration_s`; waits for every
    answer (each request's deadline is `timeout_s`, so the wait is bounded). Latencies
    of answered requests (ms), errors by gRPC status, remote share."""
    results = asyncio.run(_offer(target, rate, duration_s, preference, timeout_s, max_tokens))
    return {"offered_rps": round(rate, 2), **_level(results)}


def _level(results: list[tuple[float, str, str]]) -> dict[str, Any]:
    ok = [r for r in results if r[1] == "ok"]
    rejected = [r for r in results if r[1] == "RESOURCE_EXHAUSTED"]
    return {
        "requests": len(results), "ok": len(ok),
        "errors": len(results) - len(ok),
        "errors_by_status": {s: sum(1 for r in results if r[1] == s) for s in sorted({r[1] for r in results}) if s != "ok"},
        "remote_share": round(sum(1 for r in ok if r[2] != "local") / max(1, len(ok)), 3),
        "p50_ms": round(pct([r[0] for r in ok], 0.5), 1) if ok else None,
        "p99_ms": round(pct([r[0] for r in ok], 0.99), 1) if ok else None,
        "rejection_ms_p50": round(pct([r[0] for r in rejected], 0.5), 2) if rejected else None,
    }


def service_time_ms(client: Any, repeats: int = 5, max_tokens: int = MAX_TOKENS, timeout_s: float = 60.0) -> list[float]:
    """Sequential LOCAL_ONLY requests after a warm-up: each one's total time in ms (one
    that passes `timeout_s` counts as taking that long: the box is too slow for the limit)."""
    import grpc

    def one() -> float:
        t0 = time.perf_counter()
        try:
            client.ask(PROMPT, max_tokens=max_tokens, temperature=0, preference="local_only", timeout=timeout_s)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                raise
        return (time.perf_counter() - t0) * 1000

    one()
    return [one() for _ in range(repeats)]


def request_timeout(p99_limit_ms: float) -> float:
    """Each request's deadline in a capacity run: three times the p99 limit (at least 5 s).
    A request that waits that long has missed the limit anyway, and a level must end."""
    return max(5.0, 3 * p99_limit_ms / 1000)


def _held(level: dict[str, Any], p99_limit_ms: float) -> bool:
    return level["errors"] == 0 and level["p99_ms"] is not None and level["p99_ms"] <= p99_limit_ms


def too_short(k: float, sequential_rps: float, level_s: float, queue_size: int) -> bool:
    """Above the one-at-a-time rate the queue grows by (k - 1) x that rate each second; a
    level too short for it to fill (and refuse, or the waits to pile up) shows nothing."""
    return k > 1 and level_s * (k - 1) * sequential_rps < queue_size + 1


def capacity_ladder(target: str, sequential_rps: float, *, level_s: float, p99_limit_ms: float, deadline: float,
                    queue_size: int, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """LOCAL_ONLY at each LADDER fraction of `sequential_rps` (stopping after the first
    level that does not hold, at a level too short to tell, or at `deadline`); the highest
    held rate, and a note when the ladder stopped before a level failed."""
    levels: list[dict[str, Any]] = []
    note = ""
    for k in LADDER:
        if levels and time.perf_counter() + level_s * 1.5 > deadline:
            note = f"the budget ended the ladder at {levels[-1]['load']}x: the capacity may be higher"
            break
        if too_short(k, sequential_rps, level_s, queue_size):
            note = (f"{k}x not tried: {level_s:.0f}-s levels are too short for the queue of {queue_size} to fill; "
                    "the capacity is at least the figure shown (a longer run tells)")
            break
        level = {"load": k, **offer(target, k * sequential_rps, level_s, "local_only", request_timeout(p99_limit_ms))}
        level["held"] = _held(level, p99_limit_ms)
        levels.append(level)
        progress(f"local only at {level['offered_rps']} req/s: p99 {level['p99_ms']} ms, "
                 f"{level['errors']} refused")
        time.sleep(0.5)  # the queue drains before the next level
        if not level["held"]:
            break
    held = [lv["offered_rps"] for lv in levels if lv["held"]]
    return {"levels": levels, "capacity_rps": max(held) if held else 0.0, "capacity_note": note}


def past_capacity(target: str, rate: float, *, level_s: float, stop_remote: Callable[[], None], timeout_s: float = 60.0,
                  progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """AUTO at `rate` with the remote tier up, then again after `stop_remote()`; and
    whether health stayed SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    up = offer(target, rate, level_s, "auto", timeout_s)
    progress(f"remote up at {up['offered_rps']} req/s: {up['remote_share']:.0%} remote, p99 {up['p99_ms']} ms")
    time.sleep(0.5)
    stop_remote()
    down = offer(target, rate, level_s, "auto", timeout_s)
    progress(f"remote down at {down['offered_rps']} req/s: {down['errors']} refused, p99 {down['p99_ms']} ms")
    with grpc.insecure_channel(target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    return {"remote_up": up, "remote_down": down,
            "healthy_after": status == health_pb2.HealthCheckResponse.SERVING}


def sequential_capacity(service_ms: list[float]) -> float:
    """Requests per second one at a time: 1 / median service time."""
    return 1000 / statistics.median(service_ms)
