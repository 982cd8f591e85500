"""The answer cache: storage rules in-process, then hits, misses, near-misses, TTL, tenant
and data-policy isolation, streaming hits and the degradation path through a real daemon
with the real MiniLM encoder."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.answer_cache import AnswerCache, CachedAnswer, CacheQuery
from edge.catalog import default_models_dir
from edge.config import load_settings
from edge.client import Client
from edge.testing.providers import ProviderServer

from .conftest import TOKEN_A, TOKEN_B, fake_config, start_daemon, write_private

# -- storage, with a hand-made embedding so the geometry is known exactly -------------------


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(384, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


VECTORS = {"alpha": unit(1, 0), "alpha-ish": unit(1, 0.2), "beta": unit(0, 1)}  # cos(alpha, alpha-ish) = 0.981


def answer(text: str, tier: str = "cloud") -> CachedAnswer:
    return CachedAnswer(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=2, tier=tier,
                        backend="b", model="m", created=0.0)


def q(prompt: str, tenant: str = "", scope: str = "any", system: str = "") -> CacheQuery:
    msgs = ([("system", system)] if system else []) + [("user", prompt)]
    return CacheQuery.build(tenant=tenant, scope=scope, messages=msgs, params={"max_tokens": 16})


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def cache(tmp_path, clock) -> AnswerCache:
    c = AnswerCache(tmp_path / "c.sqlite3", ttl_s=3600, max_entries=3, threshold=0.95,
                    embed=lambda text: VECTORS[text.split()[0]], clock=lambda: clock[0])
    yield c
    c.close()


def test_exact_semantic_and_near_miss(cache):
    cache.store(q("alpha  question"), answer("A"))
    exact = cache.lookup(q("alpha question"))  # whitespace does not matter
    assert exact.text == "A" and exact.kind == "exact" and exact.similarity == 1.0
    close = cache.lookup(q("alpha-ish question"))
    assert close.kind == "semantic" and close.similarity == pytest.approx(0.9806, abs=1e-3)
    assert cache.lookup(q("beta question")) is None  # orthogonal: a miss
    assert cache.lookup(q("alpha-ish question"), threshold=0.99) is None  # a near miss below the threshold
    assert cache.lookup(q("alpha-ish question"), exact_only=True) is None
    # The rest of the conversation is part of the key: another system prompt is another partition.
    assert cache.lookup(q("alpha question", system="be terse")) is None


def test_ttl_expiry_tenants_scopes_and_tiers(cache, clock):
    cache.store(q("alpha q", tenant="kiosk"), answer("kiosk's", tier="local"))
    assert cache.lookup(q("alpha q", tenant="panel")) is None
    assert cache.lookup(q("alpha q", tenant="kiosk", scope="local")) is None
    assert cache.lookup(q("alpha q", tenant="kiosk")).text == "kiosk's"
    assert cache.lookup(q("alpha-ish q", tenant="kiosk"), tiers=("cloud",)) is None  # only remote answers wanted
    clock[0] += 3601
    assert cache.lookup(q("alpha q", tenant="kiosk")) is None
    assert cache.lookup(q("alpha-ish q", tenant="kiosk")) is None


def test_size_bound_evicts_least_recently_used_and_survives_reopen(tmp_path, cache, clock):
    # LRU order is kept to the minute (a write per hit would cost more than the lookup).
    for i, word in enumerate(["alpha", "beta", "alpha-ish"]):
        clock[0] += 100
        cache.store(q(f"{word} {i}"), answer(word))
    clock[0] += 100
    cache.lookup(q("alpha 0"))  # used: now the freshest
    clock[0] += 100
    cache.store(q("beta 9"), answer("new"))
    assert len(cache) == 3
    assert cache.lookup(q("beta 1"), exact_only=True) is None  # the least recently used went
    assert cache.lookup(q("alpha 0")).text == "alpha"
    cache.store(q("alpha 0"), answer("replaced"))  # same key: replaced, not duplicated
    assert len(cache) == 3 and cache.lookup(q("alpha 0")).text == "replaced"
    assert cache.lookup(q("alpha 5")).text == "replaced"  # the semantic index follows the replacement
    reopened = AnswerCache(tmp_path / "c.sqlite3", ttl_s=3600, max_entries=3, threshold=0.95,
                           embed=lambda text: VECTORS[text.split()[0]], clock=lambda: clock[0])
    try:
        assert reopened.lookup(q("alpha 5")).text == "replaced"
    finally:
        reopened.close()


# -- through the daemon ------------------------------------------------------------------------

QUESTION = "At sea level, what is the boiling point of water?"
PARAPHRASE = "What is the boiling point of water at sea level?"       # cosine 0.98 with QUESTION
LOOSE_PARAPHRASE = "At sea level, at what temperature does water boil?"  # cosine 0.90
UNRELATED = "What is the freezing point of water at sea level?"       # cosine 0.83: a different question


def cache_config(reply: str = "one hundred degrees", extra: str = "", cache: str = "") -> str:
    return fake_config(reply=reply, extra=f"\n[cache]\nenabled = true\n{cache}\n{extra}")


def ask(c: Client, prompt: str, **kw):  # type: ignore[no-untyped-def]
    return c.ask(prompt, **{"max_tokens": 32, "timeout": 10, **kw})


def test_hit_miss_near_miss_and_streaming_hit(daemon_factory):
    d = daemon_factory(cache_config())
    c = d.client()
    first = ask(c, QUESTION)
    assert first.served_by.backend == "local" and not first.HasField("cache")
    again = ask(c, QUESTION)
    assert again.served_by.backend == "cache" and again.text == first.text
    assert again.cache.match == "exact" and again.cache.original.backend == "local" and again.cost_usd == 0
    assert [x.code for x in again.trace] == ["CACHE_HIT"]
    close = ask(c, PARAPHRASE)
    assert close.served_by.backend == "cache" and close.cache.match == "semantic"
    assert close.cache.similarity >= 0.95
    assert ask(c, UNRELATED).served_by.backend == "local"  # near in wording, below the threshold
    assert ask(c, QUESTION, max_tokens=5).served_by.backend == "local"  # other parameters, other answer

    msgs = list(c.stream(QUESTION, max_tokens=32, timeout=10))
    deltas = [m.delta for m in msgs if m.WhichOneof("event") == "delta"]
    final = msgs[-1].final
    assert len(deltas) == 3 and "".join(deltas) == final.text == first.text
    assert final.served_by.backend == "cache" and final.cache.match == "exact"
    assert c.status(timeout=5).models[0].requests_total == 3  # the model ran for the misses only


def test_cache_metrics(daemon_factory):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    d = daemon_factory(cache_config(extra='[metrics]\nlisten = "127.0.0.1:0"\n'))
    c = d.client()
    ask(c, QUESTION), ask(c, QUESTION), ask(c, PARAPHRASE), ask(c, UNRELATED)

    def scrape() -> dict:
        text = httpx.get(f"http://{d.addresses['metrics']}/metrics", timeout=5).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    deadline = time.monotonic() + 10
    samples = scrape()
    while samples[("edge_cache_entries", ())] < 2 and time.monotonic() < deadline:  # stores are queued
        time.sleep(0.05)
        samples = scrape()
    assert samples[("edge_cache_entries", ())] == 2
    assert samples[("edge_cache_hits_total", (("match", "exact"),))] == 1
    assert samples[("edge_cache_hits_total", (("match", "semantic"),))] == 1
    assert samples[("edge_requests_total", (("backend", "cache"), ("outcome", "ok"), ("tier", "local")))] == 2


def test_answers_never_cross_tenants_or_the_local_only_boundary(daemon_factory, tmp_path):
    tokens = write_private(tmp_path / "tokens", f"kiosk {TOKEN_A}\npanel {TOKEN_B}\n")
    d = daemon_factory(cache_config(extra=f'[security]\ntokens_file = "{tokens}"\n'))
    kiosk, panel = Client(d.target, token=TOKEN_A), Client(d.target, token=TOKEN_B)
    ask(kiosk, QUESTION)
    assert ask(kiosk, QUESTION).served_by.backend == "cache"
    assert ask(panel, QUESTION).served_by.backend == "local"  # the other tenant computes its own
    assert ask(panel, QUESTION).served_by.backend == "cache"
    # A local-only request neither reads answers of ordinary requests nor lends them its own.
    assert ask(kiosk, QUESTION, preference="local_only").served_by.backend == "local"
    ask(kiosk, "Something private", preference="local_only")
    assert ask(kiosk, "Something private").served_by.backend == "local"
    assert ask(kiosk, "Something private", preference="local_only").served_by.backend == "cache"


def test_cache_survives_a_restart(tmp_path):
    cfg = cache_config()
    d = start_daemon(tmp_path, cfg, name="persist")
    try:
        ask(d.client(), QUESTION)
    finally:
        d.stop()
    d = start_daemon(tmp_path, cfg, name="persist")
    try:
        assert ask(d.client(), PARAPHRASE).served_by.backend == "cache"
    finally:
        d.stop()


def degradation_config(cloud: ProviderServer) -> str:
    # Every request is cascade-armed (band 0, nothing "hard"), and the fake local model is
    # never confident: it escalates whenever it can.
    return fake_config(reply="it is hot, maybe", extra=f"""
fake_logprob = -3.0

[routing]
difficulty_threshold = 1.0
cascade_band = 0.0
device_load = false   # a busy CI box must not decide before the cascade does

[resilience]
breaker_failures = 1
probe_interval_s = 60

[cache]
enabled = true

[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "test-model"
first_byte_timeout_s = 2
""")


def test_network_down_unconfident_local_serves_a_close_cached_remote_answer(daemon_factory):
    cloud = ProviderServer("openai", reply="100 degrees Celsius").start()
    try:
        d = daemon_factory(degradation_config(cloud))
        c = d.client()
        up = ask(c, QUESTION)
        assert up.served_by.backend == "cloud"
        assert "CASCADE_ARMED" in [x.code for x in up.trace] and "CASCADE_ESCALATED" in [x.code for x in up.trace]
        cloud.stop()

        # The network is down: a close (not close enough for a normal hit) cached cloud
        # answer beats the unconfident local one, and the trace says so.
        down = ask(c, LOOSE_PARAPHRASE)
        assert down.served_by.backend == "cache" and down.text == "100 degrees Celsius"
        assert down.cache.match == "semantic" and 0.88 <= down.cache.similarity < 0.95
        assert down.cache.original.backend == "cloud"
        codes = [x.code for x in down.trace]
        assert "CACHE_FALLBACK" in codes and "CASCADE_ESCALATED" in codes
        assert [a.outcome for a in down.attempts][0] == "low_confidence"

        # Nothing close in the cache: the unconfident local answer stands (it is not an error).
        alone = ask(c, UNRELATED)
        assert alone.served_by.backend == "local" and alone.text == "it is hot, maybe" and alone.degraded
        assert "CASCADE_KEPT_LOCAL" in [x.code for x in alone.trace]
    finally:
        cloud.stop()


def test_failed_escalation_falls_back_to_the_local_model_after_all(daemon_factory):
    # Not a cache feature, but the same path: the cloud looks reachable (breaker closed),
    # the unconfident local answer is set aside, and then the cloud fails. The local model
    # is the last resort: it answers, marked degraded, instead of the request failing.
    cloud = ProviderServer("openai", reply="100 degrees Celsius").start()
    cloud.stop()
    try:
        d = daemon_factory(degradation_config(cloud).replace("enabled = true", "enabled = false"))
        r = ask(d.client(), QUESTION)
        assert r.served_by.backend == "local" and r.text == "it is hot, maybe" and r.degraded
        assert [(a.backend, a.outcome) for a in r.attempts] == [
            ("local", "low_confidence"), ("cloud", "retryable_error"), ("local", "ok")]
        assert "DEGRADED_LOCAL" in [x.code for x in r.trace]
        # With the breaker now open, the next one keeps its local answer without regenerating.
        r = ask(d.client(), QUESTION)
        assert [(a.backend, a.outcome) for a in r.attempts] == [("local", "ok")]
        assert "CASCADE_KEPT_LOCAL" in [x.code for x in r.trace] and r.degraded
    finally:
        cloud.stop()


def test_difficulty_is_the_same_with_the_cache_sharing_its_embedding(tmp_path, loopback):
    """With the cache on, the classifier scores from the cache lookup's embedding (it is
    never asked to embed the prompt itself) and the decisions do not change. In-process,
    with the machine's load held calm: on a busy CI box the load step would otherwise
    decide before the difficulty step does, differently from run to run."""
    import asyncio

    from edge.engine import Engine
    from edge.pipeline.admission import Arrival
    from edge.router.classifier import DifficultyClassifier
    from edge.router.load import FixedLoad
    from edge.runtime import Injected
    from edge.types import Result
    from edge.validation import Draft

    cloud = loopback(reply="remote")
    prompts = ["What is 482 * 97?", "Write a short poem about the sea.", "Name a primary colour."]
    classifier = DifficultyClassifier.from_models_dir(default_models_dir())

    class Counting:
        """The real classifier, counting how often it embeds a prompt itself."""

        def __init__(self) -> None:
            self.encoder, self.score_embedding, self.own = classifier.encoder, classifier.score_embedding, 0

        def score(self, messages):  # type: ignore[no-untyped-def]
            self.own += 1
            return classifier.score(messages)

    def run(cache: bool) -> tuple[list[list[str]], int]:
        cfg = tmp_path / f"cache-{cache}.toml"
        text = fake_config(reply="local", extra=f"""
[routing]
profile_on_start = false

[cache]
enabled = {str(cache).lower()}

[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "test-model"
""")
        cfg.write_text(f'ledger_path = "{tmp_path / f"ledger-{cache}.sqlite3"}"\n' + text)
        settings = load_settings(cfg, environ={})
        counting = Counting()

        async def go() -> list[list[str]]:
            engine = Engine(settings, Injected(load=FixedLoad(), classifier=counting))  # type: ignore[arg-type]
            await engine.start()
            out = []
            try:
                for i, p in enumerate(prompts):
                    draft = Draft(messages=[("user", p)], max_tokens=8)
                    async for event in engine.serve(draft, Arrival(f"r{i}", "test", stream=True, time_remaining=10)):
                        if isinstance(event, Result):
                            out.append([f"{x.code}: {x.detail}" for x in event.trace
                                        if x.code.startswith(("DIFFICULTY", "CASCADE"))])
            finally:
                await engine.close()
            return out

        return asyncio.run(go()), counting.own

    without, embedded_alone = run(cache=False)
    shared, embedded_shared = run(cache=True)
    assert all(without) and embedded_alone == len(prompts)  # the classifier scored every prompt
    assert shared == without and embedded_shared == 0
