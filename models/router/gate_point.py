"""Where should the cascade's confidence gate read the local answer? Chosen on the
classifier's TRAINING families only.

Runs the local model (label.py's settings: greedy, 48 tokens, 2 threads) on the four
families the difficulty head is trained on (code, strings, word, writing; 240 tasks),
reads the running confidence where each candidate gate point decides
(edge.confidence.GatePoint: `first_sentence`, the end of the answer's first sentence
from its 4th token on, else 16 tokens or the answer's end; `fixed_window`, 16 tokens
or the answer's end), scores each answer with the shipped gate's measure max(mean /
-1.0, min / -8.0), and prints RouteLLM's APGR and CPT(95%) of that score as a router,
per family and pooled (benchmarks/routing_metrics.py; the strong tier is taken as
always right, as in benchmarks/routing_quality.py).

The held-out families (arithmetic, factual) are not run: they judge the choice in
benchmarks/routing_quality.py, after it is made.

    .venv/bin/python models/router/gate_point.py     # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from routing_metrics import apgr, cpt, sweep  # noqa: E402
from routing_quality import HOLDBACK_TOKENS, local_answer, past_the_gate  # noqa: E402
from tasks import DEFAULT_SEED, build_tasks  # noqa: E402

from edge.backends.llama import LlamaBackend  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402
from edge.config import RoutingSettings  # noqa: E402

TRAIN_FAMILIES = ("code", "strings", "word", "writing")


async def answers(tasks: list, threads: int) -> list[dict]:
    manifest = load_manifest()
    backend = LlamaBackend("local", default_models_dir() / manifest.get(manifest.default).file, n_ctx=512,
                           n_threads=threads)
    await backend.start()
    try:
        out = []
        for i, task in enumerate(tasks, 1):
            out.append(await local_answer(backend, task.prompt, 48))
            if i % 40 == 0:
                print(f"{i}/{len(tasks)}", file=sys.stderr)
        return out
    finally:
        await backend.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tasks = [t for t in build_tasks(DEFAULT_SEED) if t.family in TRAIN_FAMILIES]
    got = asyncio.run(answers(tasks, args.threads))
    routing = RoutingSettings()
    right = np.asarray([float(t.check(a["text"])) for t, a in zip(tasks, got)])
    report: dict[str, dict] = {}
    for group in (*TRAIN_FAMILIES, "all"):
        idx = np.asarray([group in ("all", t.family) for t in tasks])
        row: dict[str, object] = {"tasks": int(idx.sum()), "local_accuracy": round(float(right[idx].mean()), 3)}
        for point in ("first_sentence", "fixed_window"):
            s = np.asarray([past_the_gate(a["at_gate"][point], routing) for a, keep in zip(got, idx) if keep])
            cur = sweep(s, right[idx], np.ones(int(idx.sum())), np.ones(int(idx.sum())))
            c95 = cpt(cur.share, cur.pgr, 0.95)
            row[point] = {"apgr": round(apgr(cur.share, cur.pgr), 4), "cpt95": None if c95 is None else round(c95, 4),
                          "tokens_at_decision_mean": round(float(np.mean(
                              [a["at_gate"][point][2] for a, keep in zip(got, idx) if keep and a["at_gate"][point]])), 2)}
        report[group] = row
    print(json.dumps({"families": list(TRAIN_FAMILIES), "holdback_tokens": HOLDBACK_TOKENS, "by_family": report},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
