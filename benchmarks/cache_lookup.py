"""How long does the answer cache take to answer, full (10k entries)?

Fills an AnswerCache (edge/answer_cache.py, SQLite in a temp dir) with `--entries` answers in
ONE partition (one tenant, scope and context: the worst case, every entry is a
candidate). Stored prompts get random unit vectors (filling 10k real embeddings would
take minutes and changes nothing about the lookup's cost); the queries are real
prompts embedded with the installed MiniLM encoder, as the daemon does. Then, over
`--queries` lookups, interleaved:

  exact_hit       an exact match (SQLite index lookup; no embedding needed)
  semantic        the full miss path the daemon takes: exact miss, then the prompt's
                  cosine against every entry (vector given: the embedding is timed apart)
  semantic_hit    the same, for a query whose vector is near a stored one
  embed           the MiniLM embedding of a query prompt (what a semantic lookup adds)
  store           an insert that evicts the least recently used (the cache is full)

Prints one JSON object with p50/p99 in milliseconds for each.

    .venv/bin/python benchmarks/cache_lookup.py            # 10k entries, 500 queries
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import pct  # noqa: E402

from edge.answer_cache import AnswerCache, CachedAnswer, CacheQuery  # noqa: E402

PROMPTS = ["What is the boiling point of water at sea level?", "Translate 'good morning' into French.",
           "Write a haiku about autumn rain.", "How many legs does a spider have?",
           "Summarise the plot of Hamlet in two sentences.", "What is 17 times 23?",
           "Name three primary colours.", "Explain what a circuit breaker does in software."]


def query(prompt: str) -> CacheQuery:
    return CacheQuery.build(tenant="", scope="any", messages=[("user", prompt)], params={"max_tokens": 64})


def answer(i: int) -> CachedAnswer:
    return CachedAnswer(text=f"answer {i} " * 20, finish_reason="stop", prompt_tokens=12, completion_tokens=40,
                        tier="cloud", backend="cloud", model="m", created=time.time())


def ms(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(xs, 0.5), 3), "p99_ms": round(pct(xs, 0.99), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()

    from edge.catalog import default_models_dir
    from edge.router.classifier import SentenceEncoder

    encoder = SentenceEncoder.from_models_dir(default_models_dir())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = AnswerCache(Path(tmp) / "bench.sqlite3", ttl_s=86_400, max_entries=args.entries, threshold=0.95,
                            embed=encoder.embed)
        t0 = time.perf_counter()
        for i in range(args.entries):
            v = rng.standard_normal(384).astype(np.float32)
            cache.store(query(f"stored prompt number {i}"), answer(i), vector=v / np.linalg.norm(v))
        fill_s = time.perf_counter() - t0
        cache.store(query(PROMPTS[0]), answer(-1), vector=encoder.embed(PROMPTS[0]))  # one real neighbour
        cache.lookup(query("warm the partition up"), vector=encoder.embed("warm"))   # loads the matrix once

        timings: dict[str, list[float]] = {k: [] for k in ("exact_hit", "semantic", "semantic_hit", "embed", "store")}
        for n in range(args.queries):
            prompt = PROMPTS[n % len(PROMPTS)] + ("" if n % 2 else " Please.")
            t = time.perf_counter()
            vec = encoder.embed(prompt)
            timings["embed"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            hit = cache.lookup(query(f"stored prompt number {args.entries - 1 - n}"), exact_only=True)
            timings["exact_hit"].append((time.perf_counter() - t) * 1000)
            assert hit is not None
            t = time.perf_counter()
            cache.lookup(query(prompt), vector=vec)
            timings["semantic"].append((time.perf_counter() - t) * 1000)
            near_vec = encoder.embed("What's the boiling point of water at sea level")
            t = time.perf_counter()
            near = cache.lookup(query("What's the boiling point of water at sea level"), vector=near_vec, threshold=0.9)
            timings["semantic_hit"].append((time.perf_counter() - t) * 1000)
            assert near is not None and near.kind == "semantic"
            v = rng.standard_normal(384).astype(np.float32)
            t = time.perf_counter()
            cache.store(query(f"new prompt {n}"), answer(n), vector=v / np.linalg.norm(v))
            timings["store"].append((time.perf_counter() - t) * 1000)
        entries = len(cache)
        cache.close()

    out = {"benchmark": "cache_lookup", "entries": entries, "queries": args.queries, "partition": "one (worst case)",
           "fill_s": round(fill_s, 1), **{k: ms(v) for k, v in timings.items()},
           "note": "semantic = exact miss + cosine over every entry, embedding excluded; add embed for the total"}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
