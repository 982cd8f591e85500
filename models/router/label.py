"""Label the task suite with the local model: did it answer each task correctly?

Runs the installed default GGUF (SmolLM2-135M-Instruct Q4_1, `edge models pull`)
with llama-cpp-python on every task of `tasks.build_tasks()`: one user message,
the chat template from the GGUF's metadata (as the daemon formats it), greedy
decoding (temperature 0), at most 48 answer tokens, 2 threads. Writes one JSON
object per line to models/router/labels.jsonl:

    {"id", "family", "level", "prompt", "expected", "local_answer", "correct"}

`correct` is the task's checker applied to the answer (see tasks.py for each
family's rule). A few minutes on 2 cores (~360 tasks x ~0.6 s).

    .venv/bin/python models/router/label.py [--limit N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from tasks import DEFAULT_SEED, build_tasks  # noqa: E402

from edge.catalog import default_models_dir, load_manifest, verify_file  # noqa: E402

MAX_TOKENS = 48
N_THREADS = 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "labels.jsonl")
    ap.add_argument("--limit", type=int, default=0, help="label only the first N tasks (a smoke run)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="task-suite seed")
    ap.add_argument("--model", type=Path, help="GGUF to label with (default: the installed default model)")
    args = ap.parse_args()

    manifest = load_manifest()
    spec = manifest.get(manifest.default)
    model_path = args.model or default_models_dir() / spec.file
    if args.model is None:
        verify_file(model_path, spec.sha256, name=spec.name, models_dir=model_path.parent, expected_size=spec.size)

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=512, n_threads=N_THREADS, n_threads_batch=N_THREADS,
                          seed=0, verbose=False)
    tasks = build_tasks(args.seed)
    if args.limit:
        tasks = tasks[:args.limit]
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    t0 = time.monotonic()
    tmp = args.out.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for i, task in enumerate(tasks, 1):
            resp = llm.create_chat_completion(messages=[{"role": "user", "content": task.prompt}],
                                              temperature=0.0, max_tokens=MAX_TOKENS, seed=0)
            answer = resp["choices"][0]["message"]["content"] or ""
            ok = task.check(answer)
            total[task.family] += 1
            right[task.family] += ok
            out.write(json.dumps({"id": task.id, "family": task.family, "level": task.level, "prompt": task.prompt,
                                  "expected": task.expected, "local_answer": answer, "correct": ok},
                                 ensure_ascii=False) + "\n")
            if i % 20 == 0 or i == len(tasks):
                print(f"{i}/{len(tasks)} tasks, {time.monotonic() - t0:.0f} s", file=sys.stderr)
    tmp.replace(args.out)
    llm.close()
    print(json.dumps({f: {"tasks": total[f], "correct": right[f], "rate": round(right[f] / total[f], 3)}
                      for f in total}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
