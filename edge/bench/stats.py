"""Repeated measurements as a median with its spread, and percentiles.

Every figure `edge bench` reports from repeats is a `summarize()` dict, so a reader
(and `edge bench compare`) always sees how many samples stood behind it and how far
they disagreed:

    {"median": 118.2, "min": 110.5, "max": 121.0, "n": 5, "spread": 0.089}

`spread` is (max - min) / median (0 for one sample or a zero median).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["pct", "summarize", "timed_ms", "median_of"]


def pct(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); NaN for no data."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def summarize(xs: Sequence[float], digits: int = 3) -> dict[str, Any] | None:
    """The median, min, max, count and spread of `xs`; None when there is no sample."""
    values = [float(x) for x in xs]
    if not values:
        return None
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med if len(values) > 1 and med > 0 else 0.0
    out: dict[str, Any] = {"median": round(med, digits), "min": round(min(values), digits),
                           "max": round(max(values), digits), "n": len(values), "spread": round(spread, 3)}
    if len(values) >= 10:
        out["p99"] = round(pct(values, 0.99), digits)
    return out


def median_of(stat: dict[str, Any] | None) -> float | None:
    """The median of a `summarize()` dict, or None."""
    return None if stat is None else stat.get("median")


def timed_ms(fn: Callable[[], object], calls: int, deadline: float | None = None) -> list[float]:
    """Milliseconds of each of up to `calls` calls of `fn`; stops early at `deadline`
    (perf_counter) once at least 3 calls are timed."""
    out: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
        if deadline is not None and len(out) >= 3 and time.perf_counter() >= deadline:
            break
    return out
