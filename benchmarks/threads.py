"""Which llama.cpp thread count is fastest on this machine?

Generates the same greedy answer at each candidate thread count, interleaved
(round-robin, so drift hits every candidate alike), and prints one JSON object
with the median prompt and generation rates per count and the fastest one.
The daemon's default (`local.n_threads = 0`) is the number of physical cores;
this script is the evidence for that default on a given box.

    .venv/bin/python benchmarks/threads.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.backends.llama import default_threads  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402


def measure(llm, tokens: list[int], max_tokens: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(prompt tokens/s, generation tokens/s) for one greedy run from an empty cache."""
    llm.reset()
    llm._ctx.kv_cache_clear()  # noqa: SLF001 - force a full prompt evaluation each run
    t0 = time.perf_counter()
    first = None
    n = 0
    for tok in llm.generate(tokens, temp=0.0, reset=True):
        now = time.perf_counter()
        if first is None:
            first = now
        n += 1
        if n >= max_tokens or tok == llm.token_eos():
            break
    end = time.perf_counter()
    assert first is not None
    return len(tokens) / (first - t0), (n - 1) / (end - first) if n > 1 else 0.0


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

    import llama_cpp

    llms = {n: llama_cpp.Llama(model_path=str(model), n_ctx=1024, n_threads=n, n_threads_batch=n, verbose=False)
            for n in candidates}
    prompt = next(iter(llms.values())).tokenize(
        b"<|im_start|>user\nWrite a very long story about a dragon.<|im_end|>\n<|im_start|>assistant\n", special=True)
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in candidates}
    for _ in range(repeats):
        for n, llm in llms.items():
            time.sleep(0.2)  # let the previous candidate's threads stop spinning
            results[n].append(measure(llm, prompt, max_tokens))
    table = {n: {"prompt_tokens_per_s": round(statistics.median(r[0] for r in rs), 1),
                 "gen_tokens_per_s": round(statistics.median(r[1] for r in rs), 1)} for n, rs in results.items()}
    fastest = max(table, key=lambda n: table[n]["gen_tokens_per_s"])
    print(json.dumps({"benchmark": "threads", "model": model.name, "logical_cpus": cpus,
                      "default_threads": default_threads(), "fastest_gen_threads": fastest,
                      "by_threads": table}, indent=2))


if __name__ == "__main__":
    main()
