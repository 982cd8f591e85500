"""Measure again, when the machine is idle, a profile that was measured under load.

A start-up profile taken while other work ran can pick the wrong thread count and
predict the wrong latency for as long as it is stored (a busy box chose 1 thread, where
2 were faster on a calm one). Such a profile is marked noisy (edge.profiler.measure);
the daemon applies it for now, and this loop measures again once nothing else is
running: the local model's queue empty and other programs using little CPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["IDLE_CPU_PERCENT", "REMEASURE_AFTER_S", "REMEASURE_TRIES", "remeasure_when_idle", "machine_idle"]

log = logging.getLogger("edge.engine")

REMEASURE_AFTER_S = 300.0   # between attempts
REMEASURE_TRIES = 12        # an hour of attempts, then the noisy profile stays until the next start
IDLE_CPU_PERCENT = 20.0     # all CPUs together, over one second, with the local model idle


def machine_idle(model_busy: Callable[[], bool]) -> bool:
    """Blocking (one second): the local model has nothing queued or running, and the
    whole machine used under IDLE_CPU_PERCENT of its CPUs meanwhile."""
    import psutil

    if model_busy():
        return False
    return psutil.cpu_percent(interval=1.0) < IDLE_CPU_PERCENT and not model_busy()


async def remeasure_when_idle(*, measure: Callable[[], Awaitable[Any]], idle: Callable[[], Awaitable[bool]],
                              apply: Callable[[Any], Awaitable[None]], name: str,
                              wait_s: float = REMEASURE_AFTER_S, tries: int = REMEASURE_TRIES) -> Any:
    """Up to `tries` times, `wait_s` apart: when `idle()`, `measure()` a fresh profile;
    the first one that is not noisy is `apply()`-ed and returned (None if none was)."""
    for attempt in range(1, tries + 1):
        await asyncio.sleep(wait_s)
        if not await idle():
            continue
        profile = await measure()
        if profile is None or profile.noisy:
            log.info("profile measured again, still noisy", extra={
                "model": name, "attempt": attempt, "why": getattr(profile, "noise_reason", "")})
            continue
        await apply(profile)
        log.info("profile measured again on an idle machine", extra={"model": name, "attempt": attempt})
        return profile
    return None
