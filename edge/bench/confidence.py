"""What per-token confidence scoring (the cascade gate's input) costs the local model.

The same greedy answer is generated with `GenerationRequest.confidence` off and on,
through `LlamaBackend`'s own decode loop in this process (`_prepare` + `_generate_sync`:
no gRPC, no event loop), interleaved with the order alternating and a pause before each
run; the scoring step alone is then timed on a real row of logits.
benchmarks/confidence_cost.py runs the same functions with more repeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.bench.stats import summarize

__all__ = ["PROMPT", "run_once", "scorer_cost_us", "confidence_costs"]

PROMPT = "Write a very long story about a dragon named Cinder."


def run_once(backend: Any, prepared: Any, request: Any, stop_at: float = float("inf")) -> dict[str, Any]:
    """One greedy generation through the backend's decode loop, on this thread; cut
    short at `stop_at` (perf_counter), the rate then coming from the tokens so far."""
    t0 = time.perf_counter()
    parts, last = [], None
    for chunk in backend._generate_sync(prepared, request, lambda: time.perf_counter() > stop_at):  # noqa: SLF001
        parts.append(chunk.text)
        last = chunk
    elapsed = time.perf_counter() - t0
    if last is None or not last.completion_tokens:  # cut before the first token
        return {"tokens": 0, "tokens_per_s": 0.0, "text": "", "logprob_mean": None, "logprob_min": None}
    return {"tokens": last.completion_tokens, "tokens_per_s": last.completion_tokens / elapsed,
            "text": "".join(parts), "logprob_mean": last.logprob_mean, "logprob_min": last.logprob_min}


def scorer_cost_us(backend: Any, token: int, n: int = 2000) -> float:
    """Microseconds per scoring step, on the row the last run left in the context."""
    scorer = backend._scorer  # noqa: SLF001
    if scorer is None:
        raise RuntimeError("the backend has no token scorer")
    t0 = time.perf_counter()
    for _ in range(n):
        scorer.logprob(token)
    return (time.perf_counter() - t0) / n * 1e6


def _pairs(backend: Any, prepared: Any, requests: dict[str, Any], repeats: int, deadline: float, settle_s: float,
           progress: Callable[[str], None]) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    stop_at = deadline + 5.0  # a later pair that would end far past the deadline is cut short
    for i in range(repeats):
        if i > 0 and time.perf_counter() > deadline:
            break
        for side in (("without", "with") if i % 2 == 0 else ("with", "without")):
            time.sleep(settle_s)
            # The first pair runs to the end whatever the time (both sides the same length).
            results[side].append(run_once(backend, prepared, requests[side], stop_at if i > 0 else float("inf")))
        if not all(results[side][-1]["tokens"] for side in results):  # a pair cut short is no pair
            for side in results:
                results[side].pop()
            break
        progress(f"confidence pair {i + 1}/{repeats}")
    return results


def confidence_costs(model: Path, *, threads: int, max_tokens: int, repeats: int, deadline: float,
                     settle_s: float = 0.2, n_ctx: int = 2048,
                     progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Generation rate without and with confidence scoring (tok/s), their ratio, and the
    scoring step alone (µs per token); at least one pair, more while before `deadline`."""
    from edge.backends.base import GenerationRequest, Message, SamplingParams
    from edge.backends.llama import LlamaBackend

    backend = LlamaBackend("bench", model, n_ctx=n_ctx, n_threads=threads)
    asyncio.run(backend.start())
    try:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        messages = (Message("user", PROMPT),)
        requests = {side: GenerationRequest(messages=messages, params=params, confidence=(side == "with"))
                    for side in ("without", "with")}
        prepared = backend._prepare(requests["without"])  # noqa: SLF001 - same tokens for both sides
        for side in ("without", "with"):  # warm both paths and put the prompt in the KV cache
            run_once(backend, prepared, requests[side], time.perf_counter() + 2.0)
        results = _pairs(backend, prepared, requests, repeats, deadline, settle_s, progress)
        scorer_us = scorer_cost_us(backend, prepared.tokens[-1])
    finally:
        asyncio.run(backend.close())
    without = summarize([r["tokens_per_s"] for r in results["without"]], 1)
    with_ = summarize([r["tokens_per_s"] for r in results["with"]], 1)
    assert without is not None and with_ is not None
    return {
        "max_tokens": max_tokens, "pairs": len(results["with"]), "without_tps": without, "with_tps": with_,
        "ratio": round(with_["median"] / without["median"], 3) if without["median"] else None,
        "ratio_paired": summarize([w["tokens_per_s"] / o["tokens_per_s"]
                                   for o, w in zip(results["without"], results["with"])], 3),
        "scorer_us_per_token": round(scorer_us, 1),
        "scorer_share_of_token_time": round(scorer_us * 1e-6 * with_["median"], 4),
        "tokens_per_run": sorted({r["tokens"] for side in results.values() for r in side}),
        "outputs_identical": len({r["text"] for side in results.values() for r in side}) == 1,
        "logprob_mean": _round(results["with"][0]["logprob_mean"]), "logprob_min": _round(results["with"][0]["logprob_min"]),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
