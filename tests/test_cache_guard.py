"""The meaning guard of semantic cache hits: its verdicts on clear cases, then the cache
refusing a near miss that scores above the threshold (and serving it with the guard off),
old databases without stored prompts, and the same through a real daemon and MiniLM."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge.answer_cache import AnswerCache, CachedAnswer, CacheQuery
from edge.cache_guard import meaning_change

from .conftest import fake_config

# -- verdicts ----------------------------------------------------------------------------------

CHANGES = [
    # negation
    ("Is it safe to eat raw eggs while pregnant?", "Is it not safe to eat raw eggs while pregnant?", "negation"),
    ("Can I freeze cooked rice?", "Can't I freeze cooked rice?", "negation"),
    ("How do I make pancakes with eggs?", "How do I make pancakes without eggs?", "negation"),
    ("Which sodas contain caffeine?", "Which sodas dont contain caffeine?", "negation"),
    ("Should I charge my phone overnight?", "Should I never charge my phone overnight?", "negation"),
    # antonyms, from the table and by negating prefix
    ("How do I turn on dark mode?", "How do I turn off dark mode?", "antonym"),
    ("How do I enable Bluetooth?", "How do I disable Bluetooth?", "antonym"),
    ("How can I increase my credit score?", "How can I decrease my credit score?", "antonym"),
    ("What should I do before a marathon?", "What should I do after a marathon?", "antonym"),
    ("What is the maximum dose of paracetamol?", "What is the minimum dose of paracetamol?", "antonym"),
    ("Is the water level above the mark?", "Is the water level below the mark?", "antonym"),
    ("How do I open a port on my firewall?", "How do I close a port on my firewall?", "antonym"),
    ("Is now a good time to buy gold?", "Is now a good time to sell gold?", "antonym"),
    ("The feature was enabled yesterday, why?", "The feature was disabled yesterday, why?", "antonym"),
    ("How do I lock my iPhone?", "How do I unlock my iPhone?", "antonym"),
    ("How do I connect my headphones?", "How do I disconnect my headphones?", "antonym"),
    # numbers, as multisets, digits and words alike
    ("What is 17 times 23?", "What is 17 times 24?", "numbers"),
    ("How much flour for two cups of water?", "How much flour for three cups of water?", "numbers"),
    ("Who won the World Cup in 2018?", "Who won the World Cup in 2022?", "numbers"),
    ("Set an alarm for 5:30 am", "Set an alarm for 6:30 am", "numbers"),
    # operands swapped around a directional word, or exchanged around one that stays
    ("Convert 100 Fahrenheit to Celsius", "Convert 100 Celsius to Fahrenheit", "order"),
    ("Cheapest flights from Paris to London", "Cheapest flights from London to Paris", "order"),
    ("Is 7 greater than 3?", "Is 3 greater than 7?", "order"),
    ("Is Barack Obama older than Michelle Obama?", "Is Michelle Obama older than Barack Obama?", "order"),
    ("Translate this from English into German", "Translate this from German into English", "order"),
    ("Divide 120 by 8", "Divide 8 by 120", "order"),
    ("How much is 100 dollars in euros?", "How much is 100 euros in dollars?", "order"),
    ("Is 7 a multiple of 91?", "Is 91 a multiple of 7?", "order"),
    ("Did Spain beat England in the final?", "Did England beat Spain in the final?", "order"),
]

SAME = [
    ("What is the capital of Australia?", "What is the capital of Australia? Thanks!"),
    ("What is the boiling point of water at sea level?", "At sea level, what is the boiling point of water?"),
    ("How do I turn on dark mode?", "How can I turn on dark mode?"),
    ("What is the best way to clean a cast iron pan?", "whats the best way to clean a cast iron pan"),
    ("Why doesn't my laptop turn on?", "Why won't my laptop turn on?"),
    ("Why isn't Zoom working?", "Why is Zoom not working?"),
    ("Is it OK to drink two coffees a day?", "Is it OK to drink 2 coffees a day?"),
    ("How many grams are in twenty-five ounces?", "How many grams are in 25 ounces?"),
    ("Is 1,000 bigger than 999?", "Is 1000 larger than 999?"),
    ("Which one is better, tea or coffee?", "Which is better, tea or coffee?"),
    ("Convert 5 miles to kilometers", "How do I convert 5 miles to kilometers?"),
    ("Translate 'good morning' into French", "Translate 'good morning' to French"),
    ("Python vs Java: which is faster?", "Java vs Python: which is faster?"),
    ("When travelling from Canada to Mexico, do I need a visa?",
     "Do I need a visa when travelling from Canada to Mexico?"),
    ("In January, is it cold in Oslo?", "Is it cold in Oslo in January?"),
    ("What should I do before a job interview?", "Before a job interview, what should I do?"),
]


@pytest.mark.parametrize(("cached", "new", "reason"), CHANGES, ids=[f"{r}:{n}" for _, n, r in CHANGES])
def test_guard_names_a_change_of_meaning(cached: str, new: str, reason: str) -> None:
    assert meaning_change(cached, new) == reason
    assert meaning_change(new, cached) == reason  # either way round


@pytest.mark.parametrize(("cached", "new"), SAME, ids=[n for _, n in SAME])
def test_guard_lets_a_paraphrase_through(cached: str, new: str) -> None:
    assert meaning_change(cached, new) is None
    assert meaning_change(new, cached) is None


# -- in the cache, with a hand-made embedding so every pair scores 0.98 ------------------------

ON, OFF = "How do I turn on dark mode?", "How do I turn off dark mode?"
CAN = "How can I turn on dark mode?"


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(384, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


VECTORS = {ON: unit(1, 0), OFF: unit(1, 0.2), CAN: unit(1, -0.2)}  # cosine with ON: 0.981


def q(prompt: str) -> CacheQuery:
    return CacheQuery.build(tenant="", scope="any", messages=[("user", prompt)], params={"max_tokens": 16})


def answer(text: str) -> CachedAnswer:
    return CachedAnswer(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=2, tier="cloud",
                        backend="b", model="m", created=0.0)


def open_cache(path, guarded: bool) -> AnswerCache:  # type: ignore[no-untyped-def]
    return AnswerCache(path, ttl_s=3600, max_entries=100, threshold=0.95, embed=VECTORS.__getitem__,
                       clock=lambda: 1000.0, guard=meaning_change if guarded else None)


@pytest.mark.parametrize("guarded", [True, False], ids=["guard on", "guard off"])
def test_a_near_miss_above_the_threshold_is_served_only_without_the_guard(tmp_path, guarded: bool) -> None:
    cache = open_cache(tmp_path / "c.sqlite3", guarded)
    try:
        cache.store(q(ON), answer("Settings > Display > Dark mode: on"))
        near = cache.lookup(q(OFF))
        if guarded:
            assert near is None and cache.refused == {"antonym": 1}
        else:
            assert near is not None and near.kind == "semantic" and near.similarity >= 0.95
        close = cache.lookup(q(CAN))  # a paraphrase at the same distance is served either way
        assert close is not None and close.kind == "semantic"
        assert cache.lookup(q(ON)).kind == "exact"
        # The degradation path's looser threshold is guarded too.
        assert (cache.lookup(q(OFF), threshold=0.5) is None) == guarded
    finally:
        cache.close()


def test_a_refused_candidate_makes_way_for_the_next_best(tmp_path) -> None:
    cache = open_cache(tmp_path / "c.sqlite3", guarded=True)
    try:
        cache.store(q(OFF), answer("turn it off like this"))
        cache.store(q(ON), answer("turn it on like this"))
        # A prompt that means ON but embeds exactly like OFF: OFF (1.0) is refused, ON (0.98) serves.
        hit = cache.lookup(q("How do I turn on dark mode"), vector=VECTORS[OFF])
        assert hit is not None and hit.text == "turn it on like this" and cache.refused == {"antonym": 1}
    finally:
        cache.close()


def test_an_old_database_gains_the_prompt_column_and_its_rows_are_never_guessed(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    cache = open_cache(path, guarded=False)
    cache.store(q(ON), answer("on"))
    cache.close()
    # What a database written before the prompt column looks like.
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE answers DROP COLUMN prompt")
    db.commit()
    db.close()

    guarded = open_cache(path, guarded=True)
    try:
        assert guarded.lookup(q(ON)).kind == "exact"  # exact hits need no prompt
        assert guarded.lookup(q(CAN)) is None and guarded.refused == {"no_prompt": 1}
        guarded.store(q(OFF), answer("off"))  # new rows carry their prompt (cosine 0.92 with CAN)
        assert guarded.lookup(q(CAN), threshold=0.9) is None
        assert guarded.refused == {"no_prompt": 2, "antonym": 1}
    finally:
        guarded.close()
    unguarded = open_cache(path, guarded=False)
    try:
        assert unguarded.lookup(q(CAN)).text == "on"
    finally:
        unguarded.close()


# -- through the daemon, with the real MiniLM encoder -----------------------------------------

CELSIUS = "Convert 100 Fahrenheit to Celsius"
REVERSED = "Convert 100 Celsius to Fahrenheit"          # cosine 0.987: a near miss above 0.95
POLITE = "Convert 100 Fahrenheit to Celsius, please"   # cosine 0.969: a paraphrase


@pytest.mark.parametrize("guard", ["", "guard = false"], ids=["guard on (default)", "guard off"])
def test_the_daemon_answers_a_reversed_question_itself_with_the_guard_on(daemon_factory, guard: str) -> None:
    d = daemon_factory(fake_config(reply="37.8 degrees", extra=f"\n[cache]\nenabled = true\n{guard}\n"))
    c = d.client()
    assert c.ask(CELSIUS, max_tokens=32, timeout=10).served_by.backend == "local"
    reverse = c.ask(REVERSED, max_tokens=32, timeout=10)
    assert reverse.served_by.backend == ("local" if not guard else "cache")
    polite = c.ask(POLITE, max_tokens=32, timeout=10)
    assert polite.served_by.backend == "cache" and polite.cache.match == "semantic"


def test_refused_hits_are_counted_in_the_metrics_by_reason():
    from prometheus_client import CollectorRegistry, generate_latest

    from edge.metrics import _LiveState
    from edge.snapshot import Snapshot

    snap = Snapshot(uptime_s=1.0, default_model="m", network="local-only", cache_entries=3,
                    cache_refused={"numbers": 2, "negation": 1})
    registry = CollectorRegistry()
    registry.register(_LiveState(lambda: snap, lambda: "serving"))
    text = generate_latest(registry).decode()
    assert 'edge_cache_guard_refused_total{reason="numbers"} 2.0' in text
    assert 'edge_cache_guard_refused_total{reason="negation"} 1.0' in text
