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

The runs are edge.bench.confidence's, which `edge bench` runs on an installed box.

    .venv/bin/python benchmarks/confidence_cost.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.backends.llama import default_threads  # noqa: E402
from edge.bench.confidence import confidence_costs  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402


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
    threads = args.threads or default_threads()
    if args.model:
        model = Path(args.model)
    else:
        manifest = load_manifest()
        model = default_models_dir() / manifest.get(manifest.default).file

    r = confidence_costs(model, threads=threads, max_tokens=max_tokens, repeats=repeats, deadline=float("inf"),
                         settle_s=args.settle_ms / 1000)
    print(json.dumps({
        "benchmark": "confidence_cost",
        "model": model.name,
        "threads": threads,
        "max_tokens": max_tokens,
        "settle_ms": args.settle_ms,
        "repeats": r["pairs"],
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "without_tokens_per_s": r["without_tps"]["median"],
        "with_tokens_per_s": r["with_tps"]["median"],
        "ratio": r["ratio"],
        "ratio_paired_p50": r["ratio_paired"]["median"],
        "scorer_us_per_token": r["scorer_us_per_token"],
        "scorer_share_of_token_time": r["scorer_share_of_token_time"],
        "tokens_per_run": r["tokens_per_run"],
        "outputs_identical": r["outputs_identical"],
        "logprob_mean": r["logprob_mean"],
        "logprob_min": r["logprob_min"],
    }, indent=2))


if __name__ == "__main__":
    main()
