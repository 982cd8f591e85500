"""The router's own costs: the difficulty classifier, a routing decision, and the answer cache.

* classifier: `DifficultyClassifier.score` on a ~30-token prompt (tokenize, encode, pool,
  head) and the same plus `edge.router.decide` (the pure policy);
* answer cache: an `AnswerCache` (SQLite in a temp folder) filled with `entries` answers in
  ONE partition (the worst case: every entry is a candidate), stored with random unit
  vectors (real embeddings would take minutes and change nothing about a lookup's cost),
  then, interleaved: an exact hit, the full semantic miss path (exact miss, then the
  cosine against every entry; embedding timed apart), a semantic hit, the MiniLM embedding
  of a prompt, and a store that evicts (the cache is full).

benchmarks/classifier_latency.py and benchmarks/cache_lookup.py call these with larger
counts and add their breakdowns.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.bench.stats import summarize, timed_ms

__all__ = ["CLASSIFIER_PROMPT", "CACHE_PROMPTS", "classifier_costs", "cache_costs"]

CLASSIFIER_PROMPT = ("Sam buys four boxes with twelve apples in each box and then gives five of them to a friend. "
                     "How many apples does Sam have left now?")
CACHE_PROMPTS = ["What is the boiling point of water at sea level?", "Translate 'good morning' into French.",
                 "Write a haiku about autumn rain.", "How many legs does a spider have?",
                 "Summarise the plot of Hamlet in two sentences.", "What is 17 times 23?",
                 "Name three primary colours.", "Explain what a circuit breaker does in software."]
_NEAR = "What's the boiling point of water at sea level"


def classifier_costs(clf: Any, *, calls: int, deadline: float) -> dict[str, Any]:
    """Score and decision latency (ms) of a loaded DifficultyClassifier; half the time to
    `deadline` each, after a warm-up."""
    from edge.router import decide
    from edge.types import Preference, Tier

    messages = [("system", "You are a helpful assistant."), ("user", CLASSIFIER_PROMPT)]

    def decision() -> None:
        clf.score(messages)
        decide(requested_model="", preference=Preference.AUTO, local_models=["m"], default_model="m",
               remote_tiers=(Tier.CLOUD,))

    timed_ms(decision, 10)  # warm-up: first runs allocate and pick kernels
    now = time.perf_counter()
    score = timed_ms(lambda: clf.score(messages), calls, now + (deadline - now) / 2)
    decisions = timed_ms(decision, calls, deadline)
    return {"prompt_tokens": len(clf.encoder.tokenize(CLASSIFIER_PROMPT)), "score_ms": summarize(score, 3),
            "decision_ms": summarize(decisions, 3), "score": round(clf.score(messages), 4)}


def _query(prompt: str) -> Any:
    from edge.answer_cache import CacheQuery

    return CacheQuery.build(tenant="", scope="any", messages=[("user", prompt)], params={"max_tokens": 64})


def _answer(i: int) -> Any:
    from edge.answer_cache import CachedAnswer

    return CachedAnswer(text=f"answer {i} " * 20, finish_reason="stop", prompt_tokens=12, completion_tokens=40,
                        tier="cloud", backend="cloud", model="m", created=time.time())


MIN_ENTRIES = 500  # filled whatever the deadline: fewer would time an empty cache


def _fill(cache: Any, entries: int, dim: int, deadline: float, rng: Any) -> int:
    import numpy as np

    for i in range(entries):
        v = rng.standard_normal(dim).astype(np.float32)
        cache.store(_query(f"stored prompt number {i}"), _answer(i), vector=v / np.linalg.norm(v))
        if i >= MIN_ENTRIES and i % 256 == 0 and time.perf_counter() > deadline:
            return i + 1
    return entries


def _one_round(cache: Any, embed: Callable[[str], Any], n: int, filled: int, rng: Any,
               timings: dict[str, list[float]]) -> None:
    import numpy as np

    prompt = CACHE_PROMPTS[n % len(CACHE_PROMPTS)] + ("" if n % 2 else " Please.")

    def clock(kind: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        timings[kind].append((time.perf_counter() - t) * 1000)
        return out

    vec = clock("embed", lambda: embed(prompt))
    hit = clock("exact_hit", lambda: cache.lookup(_query(f"stored prompt number {filled - 1 - n % filled}"),
                                                  exact_only=True))
    clock("semantic", lambda: cache.lookup(_query(prompt), vector=vec))
    near_vec = embed(_NEAR)
    near = clock("semantic_hit", lambda: cache.lookup(_query(_NEAR), vector=near_vec, threshold=0.9))
    if hit is None or near is None:
        raise RuntimeError("the answer cache missed an entry it holds")
    v = rng.standard_normal(len(near_vec)).astype(np.float32)
    clock("store", lambda: cache.store(_query(f"new prompt {n}"), _answer(n), vector=v / np.linalg.norm(v)))


def cache_costs(embed: Callable[[str], Any], *, entries: int, queries: int, deadline: float,
                fill_share: float = 0.5) -> dict[str, Any]:
    """Lookup and store latency (ms) of an answer cache holding up to `entries` answers in
    one partition; the fill stops early at `fill_share` of the time to `deadline`."""
    import numpy as np

    from edge.answer_cache import AnswerCache

    rng = np.random.default_rng(0)
    dim = len(embed("warm"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache = AnswerCache(Path(tmp) / "bench.sqlite3", ttl_s=86_400, max_entries=entries, threshold=0.95,
                            embed=embed)
        try:
            filled = _fill(cache, entries, dim, started + (deadline - started) * fill_share, rng)
            fill_s = time.perf_counter() - started
            cache.store(_query(CACHE_PROMPTS[0]), _answer(-1), vector=embed(CACHE_PROMPTS[0]))  # one real neighbour
            cache.lookup(_query("warm the partition up"), vector=embed("warm"))  # loads the matrix once
            timings: dict[str, list[float]] = {k: [] for k in ("exact_hit", "semantic", "semantic_hit", "embed",
                                                               "store")}
            for n in range(queries):
                if n >= 3 and time.perf_counter() > deadline:
                    break
                _one_round(cache, embed, n, filled, rng, timings)
            size = len(cache)
        finally:
            cache.close()
    return {"entries": size, "entries_asked": entries, "fill_s": round(fill_s, 2), "queries": len(timings["embed"]),
            "partition": "one (worst case)", **{f"{k}_ms": summarize(v, 3) for k, v in timings.items()},
            "note": "semantic = exact miss + cosine over every entry, embedding excluded; add embed for the total"}
