"""How long does the difficulty classifier add to a routing decision?

Times, over 200 calls each after a warm-up, for a ~30-token prompt:
  * score     DifficultyClassifier.score(messages): tokenize, encode, pool, head
  * decision  score + edge.router.decide() (the pure policy; the rest of the
              policy is a handful of comparisons)
  * parts     tokenizer encode, encoder session run, head session run (p50 each)
for each onnxruntime thread count given (default 1 and 2). Prints one JSON object.
The issue's target: decision p50 <= 5 ms on 2 cores.

    .venv/bin/python benchmarks/classifier_latency.py [--calls 200] [--threads 1,2]
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

from edge.bench.router_costs import CLASSIFIER_PROMPT  # noqa: E402
from edge.bench.stats import timed_ms  # noqa: E402
from edge.catalog import default_models_dir, ensure_router_models  # noqa: E402
from edge.router import decide  # noqa: E402
from edge.router.classifier import DifficultyClassifier, last_user_message  # noqa: E402
from edge.types import Preference, Tier  # noqa: E402

PROMPT = CLASSIFIER_PROMPT


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ms = sorted(samples_ms)
    return {"p50": round(statistics.median(ms), 3), "p99": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
            "mean": round(statistics.fmean(ms), 3)}


def timed(fn, calls: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Milliseconds of each call (edge.bench.stats.timed_ms)."""
    return timed_ms(fn, calls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", default="1,2", help="comma-separated onnxruntime intra-op thread counts")
    args = ap.parse_args()
    encoder_onnx, tokenizer_json = ensure_router_models(default_models_dir())
    messages = [("system", "You are a helpful assistant."), ("user", PROMPT)]
    result: dict[str, object] = {"prompt": PROMPT, "calls": args.calls, "cpus": os.cpu_count(), "runs": []}
    for threads in (int(t) for t in args.threads.split(",")):
        clf = DifficultyClassifier.load(encoder_onnx, tokenizer_json, threads=threads)
        enc = clf.encoder
        result["prompt_tokens"] = len(enc.tokenize(PROMPT))

        def decision() -> None:
            clf.score(messages)
            decide(requested_model="", preference=Preference.AUTO, local_models=["m"],
                   default_model="m", remote_tiers=(Tier.CLOUD,))

        # Private handles: the breakdown needs the sessions the classifier holds.
        tok, sess, head = enc._tokenizer, enc._session, clf._head  # noqa: SLF001
        import numpy as np

        e = tok.encode(last_user_message(messages))
        feeds = {"input_ids": np.asarray([e.ids], dtype=np.int64),
                 "attention_mask": np.asarray([e.attention_mask], dtype=np.int64),
                 "token_type_ids": np.asarray([e.type_ids], dtype=np.int64)}
        feeds = {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}}
        x = enc.features(PROMPT).reshape(1, -1)
        timed(decision, 20)  # warm-up: first runs allocate and pick kernels
        run = {
            "threads": threads,
            "score_ms": percentiles(timed(lambda: clf.score(messages), args.calls)),
            "decision_ms": percentiles(timed(decision, args.calls)),
            "parts_p50_ms": {
                "tokenize": percentiles(timed(lambda: tok.encode(PROMPT), args.calls))["p50"],
                "encoder": percentiles(timed(lambda: sess.run(None, feeds), args.calls))["p50"],
                "head": percentiles(timed(lambda: head.run(None, {"features": x}), args.calls))["p50"],
            },
            "score": round(clf.score(messages), 4),
        }
        result["runs"].append(run)  # type: ignore[union-attr]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
