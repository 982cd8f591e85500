"""The first answer a new user sees: README's example questions through the default model,
as `edge serve` builds it, 10 runs each (the seed varies), side by side with the settings
it shipped with before.

Each answer is checked automatically: it must be in English (English function words, no
more than one French one, almost no accented letters) and hold what answers the question
("Paris"; "rain" for the haiku; a greeting or an offer to help for "Hi"). The primer and
the temperature were chosen on other questions (DEV below: capitals of other countries,
simple facts, a poem, a greeting) before README's questions were scored.

    .venv/bin/python benchmarks/first_answer.py            # 10 runs per question
    .venv/bin/python benchmarks/first_answer.py --runs 3 --dev
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edge.backends.base import GenerationRequest, Message, SamplingParams  # noqa: E402
from edge.builders import build_local  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402
from edge.config import ModelEntry, Settings  # noqa: E402

README = [("What is the capital of France?", ["paris"]), ("Write a haiku about rain.", ["rain"]),
          ("Hi", ["hello", "hi", "hey", "help", "assist"])]
DEV = [("What is the capital of Italy?", ["rome"]), ("What is the capital of Japan?", ["tokyo"]),
       ("What is the capital of Germany?", ["berlin"]), ("What color is the sky on a clear day?", ["blue"]),
       ("How many legs does a dog have?", ["four", "4"]),
       ("What is the largest planet in our solar system?", ["jupiter"]),
       ("Write a short poem about the sea.", ["sea", "ocean", "wave"]), ("Hello", ["hello", "hi", "help", "assist"])]
_EN = {"the", "is", "of", "a", "and", "in", "it", "to", "you", "i", "are", "was", "with", "for", "on", "its",
       "known", "city", "hello", "how", "can", "help", "today"}
_FR = {"est", "le", "la", "les", "de", "du", "des", "c'est", "une", "et", "bonjour", "où", "je", "vous"}


def english(text: str) -> bool:
    words = re.findall(r"[a-zA-Zéèêàç']+", text.lower())
    accented = sum(1 for ch in text if ord(ch) > 127 and ch.isalpha())
    return (bool(words) and sum(w in _EN for w in words) >= 1 and sum(w in _FR for w in words) <= 1
            and accented <= 2)


def right(text: str, keys: list[str]) -> bool:
    return english(text) and any(re.search(rf"\b{re.escape(k)}\b", text.lower()) for k in keys)


SETTINGS = {
    "before (no primer, temperature 0.8)": {"primer": False, "temperature": 0.8},
    "primer, temperature 0.8": {"primer": True, "temperature": 0.8},
    "shipped (primer, the manifest's temperature)": {},
}


async def measure(entry: ModelEntry, questions: list[tuple[str, list[str]]], runs: int) -> dict:
    backend = build_local(entry, Settings(), default_models_dir())
    await backend.start()
    per_question = {}
    samples: list[str] = []
    t0 = time.monotonic()
    try:
        for q, keys in questions:
            ok = 0
            for seed in range(runs):
                req = GenerationRequest(messages=(Message("user", q),), params=SamplingParams(max_tokens=64, seed=seed))
                text = "".join([c.text async for c in backend.generate(req)])
                ok += right(text, keys)
                if not right(text, keys) and len(samples) < 3:
                    samples.append(text[:100])
            per_question[q] = ok
    finally:
        await backend.close()
    return {"right": per_question, "share": round(sum(per_question.values()) / (runs * len(questions)), 3),
            "worst_question_right_of": f"{min(per_question.values())}/{runs}", "wrong_samples": samples,
            "seconds": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs per question (seeds 0..runs-1)")
    ap.add_argument("--dev", action="store_true", help="also score the questions the settings were chosen on")
    args = ap.parse_args()
    name = load_manifest().default
    out: dict = {"benchmark": "first_answer", "model": name, "runs_per_question": args.runs, "readme": {}}
    for label, override in SETTINGS.items():
        entry = ModelEntry(name=name, **override)
        out["readme"][label] = asyncio.run(measure(entry, README, args.runs))
        if args.dev:
            out.setdefault("dev", {})[label] = asyncio.run(measure(entry, DEV, args.runs))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
