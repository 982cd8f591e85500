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

Prints one JSON object with p50/p99 in milliseconds for each. The measurement is
edge.bench.router_costs.cache_costs, which `edge bench` runs on an installed box.

    .venv/bin/python benchmarks/cache_lookup.py            # 10k entries, 500 queries
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402, F401 - puts the source tree first on sys.path

from edge.bench.router_costs import cache_costs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()

    from edge.catalog import default_models_dir
    from edge.router.classifier import SentenceEncoder

    encoder = SentenceEncoder.from_models_dir(default_models_dir())
    r = cache_costs(encoder.embed, entries=args.entries, queries=args.queries, deadline=float("inf"))
    out = {"benchmark": "cache_lookup", "entries": r["entries"], "queries": r["queries"], "partition": r["partition"],
           "fill_s": r["fill_s"],
           **{k: {"p50_ms": r[f"{k}_ms"]["median"], "p99_ms": r[f"{k}_ms"].get("p99", r[f"{k}_ms"]["max"])}
              for k in ("exact_hit", "semantic", "semantic_hit", "embed", "store")},
           "note": r["note"]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
