"""Which llama.cpp thread count is fastest on this machine?

Generates from the same 100-token prompt at each candidate thread count, round-robin
(so drift hits every candidate alike), on one loaded model (the thread count is applied
to its context), and prints one JSON object with the median prompt and generation rates
per count and the fastest one. The daemon's default (`local.n_threads = 0`) is the
number of physical cores; this script is the evidence for that default on a given box.
The runs are `edge bench`'s (edge.bench.local.thread_sweep), which an installed box runs
as part of `edge bench`.

    .venv/bin/python benchmarks/threads.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.backends.llama import default_threads  # noqa: E402
from edge.bench.local import thread_sweep  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402
from edge.profiler.measure import bench_prompt, load_llama  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--candidates", default="", help="comma-separated thread counts (default: 1..logical cores)")
    args = ap.parse_args()
    manifest = load_manifest()
    model = Path(args.model) if args.model else default_models_dir() / manifest.get(manifest.default).file
    cpus = os.cpu_count() or 1
    candidates = [int(x) for x in args.candidates.split(",")] if args.candidates else list(range(1, cpus + 1))
    repeats, max_tokens = (4, 64) if args.quick else (8, 128)

    llm = load_llama(model, name=model.stem, n_ctx=1024, threads=candidates[0])
    try:
        runs = thread_sweep(llm, bench_prompt(llm), candidates, gen_tokens=max_tokens, rounds=repeats,
                            deadline=float("inf"))
    finally:
        llm.close()
    table = {n: {"prompt_tokens_per_s": round(statistics.median(r.prompt_tps for r in rs), 1),
                 "gen_tokens_per_s": round(statistics.median(r.gen_tps for r in rs), 1)} for n, rs in runs.items()}
    fastest = max(table, key=lambda n: table[n]["gen_tokens_per_s"])
    print(json.dumps({"benchmark": "threads", "model": model.name, "logical_cpus": cpus,
                      "default_threads": default_threads(), "fastest_gen_threads": fastest,
                      "by_threads": table}, indent=2))


if __name__ == "__main__":
    main()
