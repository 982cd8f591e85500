"""What does per-token confidence scoring cost the local model's generation rate?

Generates the same greedy answer (same prompt, same max_tokens) with
`GenerationRequest.confidence` off and on, through `LlamaBackend`'s own decode loop
in this process (`_prepare` + `_generate_sync`: no gRPC, no event loop), interleaved
in one run (the order alternates each repeat so drift on a shared machine hits both
sides), with a short pause before each timed run so the previous run's llama.cpp
threads have stopped spinning. Prints one JSON object:

  without_tokens_per_s, with_tokens_per_s   median generation rate (completion tokens /
                                            seconds from the call to the final chunk;
                                            the prompt is KV-cached after the warm-up,
                                            so this is decode time on both sides)
  ratio                                     with / without (target >= 0.95)
  ratio_paired_p50                          median of per-pair ratios (robust to drift)
  scorer_us_per_token                       the scoring step alone, timed on a real row

    .venv/bin/python benchmarks/confidence_cost.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.backends.base import GenerationRequest, Message, SamplingParams  # noqa: E402
from edge.backends.llama import LlamaBackend, default_threads  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402

PROMPT = "Write a very long story about a dragon named Cinder."


def run(backend: LlamaBackend, prepared, request: GenerationRequest) -> dict:  # type: ignore[no-untyped-def]
    """One greedy generation through the backend's decode loop, on this thread."""
    t0 = time.perf_counter()
    parts, final = [], None
    for chunk in backend._generate_sync(prepared, request, lambda: False):  # noqa: SLF001
        parts.append(chunk.text)
        final = chunk
    elapsed = time.perf_counter() - t0
    assert final is not None and final.finish_reason is not None
    return {"tokens": final.completion_tokens, "tokens_per_s": final.completion_tokens / elapsed,
            "text": "".join(parts), "logprob_mean": final.logprob_mean, "logprob_min": final.logprob_min}


def scorer_cost_us(backend: LlamaBackend, token: int, n: int = 2000) -> float:
    """Microseconds per scoring step, on the row the last run left in the context."""
    scorer = backend._scorer  # noqa: SLF001
    assert scorer is not None
    t0 = time.perf_counter()
    for _ in range(n):
        scorer.logprob(token)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter runs (under 2 minutes here)")
    ap.add_argument("--model", help="GGUF path (default: the installed default model)")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores)")
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--settle-ms", type=float, default=200.0, help="idle pause before each timed run")
    args = ap.parse_args()
    max_tokens = args.max_tokens or (128 if args.quick else 256)
    repeats = args.repeats or (12 if args.quick else 24)
    settle_s = args.settle_ms / 1000
    threads = args.threads or default_threads()
    if args.model:
        model = Path(args.model)
    else:
        manifest = load_manifest()
        model = default_models_dir() / manifest.get(manifest.default).file

    backend = LlamaBackend("bench", model, n_ctx=2048, n_threads=threads)
    asyncio.run(backend.start())
    try:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        messages = (Message("user", PROMPT),)
        requests = {side: GenerationRequest(messages=messages, params=params, confidence=(side == "with"))
                    for side in ("without", "with")}
        prepared = backend._prepare(requests["without"])  # noqa: SLF001 - same tokens for both sides
        # Warm both paths (page cache, first allocations) and put the prompt in the KV cache.
        for side in ("without", "with"):
            run(backend, prepared, requests[side])
        results: dict[str, list[dict]] = {"without": [], "with": []}
        for i in range(repeats):
            for side in (("without", "with") if i % 2 == 0 else ("with", "without")):
                time.sleep(settle_s)
                results[side].append(run(backend, prepared, requests[side]))
        last_token = prepared.tokens[-1]
        scorer_us = scorer_cost_us(backend, last_token)
    finally:
        asyncio.run(backend.close())

    without = statistics.median(r["tokens_per_s"] for r in results["without"])
    with_ = statistics.median(r["tokens_per_s"] for r in results["with"])
    first_with = results["with"][0]
    print(json.dumps({
        "benchmark": "confidence_cost",
        "model": model.name,
        "threads": threads,
        "max_tokens": max_tokens,
        "settle_ms": args.settle_ms,
        "repeats": repeats,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "without_tokens_per_s": round(without, 2),
        "with_tokens_per_s": round(with_, 2),
        "ratio": round(with_ / without, 4),
        "ratio_paired_p50": round(statistics.median(
            w["tokens_per_s"] / o["tokens_per_s"] for o, w in zip(results["without"], results["with"])), 4),
        "scorer_us_per_token": round(scorer_us, 1),
        "scorer_share_of_token_time": round(scorer_us * 1e-6 * with_, 4),
        "tokens_per_run": sorted({r["tokens"] for side in results.values() for r in side}),
        "outputs_identical": len({r["text"] for side in results.values() for r in side}) == 1,
        "logprob_mean": round(first_with["logprob_mean"], 4),
        "logprob_min": round(first_with["logprob_min"], 4),
    }, indent=2))


if __name__ == "__main__":
    main()
