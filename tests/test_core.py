"""The request path in-process: failover, breakers, retries, the cascade, the cost gate,
routing and the PII guard, on the fake local model and in-process providers that speak
each provider's wire format (edge.testing.transport), with a fake clock for breakers.

No subprocess, no socket, no sleep waiting for a timer. tests/test_failover.py keeps the
same behaviours end to end over real TCP, where only a real daemon can show them.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Coroutine
from typing import Any

import pytest

from edge.backends.remote import CONTINUE_INSTRUCTION
from edge.errors import InvalidArgument, Unavailable
from edge.pipeline.admission import Arrival
from edge.pipeline.candidates import probe_once
from edge.router.load import FixedLoad, LoadSample
from edge.testing.providers import Fault, continuing
from edge.testing.transport import ProviderTransport
from edge.types import Notice, Outcome, Preference, Tier
from edge.validation import Draft

from .conftest import Core, FakeClock, core_settings, fake_config, remote_entries

REPLY = "The quick brown fox jumps over the lazy dog near the quiet river bank today."
LOCAL_REPLY = "local answer"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def chain_toml(*remotes: tuple[str, str, str], resilience: dict | None = None, extra: str = "",
               local: str = "") -> str:
    """The fake local model last in a chain of remote backends (strategy chain: remote first)."""
    knobs = {"backoff_base_s": 0.001, "probe_interval_s": 600, "breaker_cooldown_s": 1, **(resilience or {})}
    routing = '[routing]\nstrategy = "chain"\n' if "[routing]" not in extra else ""
    return (fake_config(reply=LOCAL_REPLY, extra=local) + routing + extra + "\n[resilience]\n"
            + "".join(f"{k} = {v}\n" for k, v in knobs.items()) + remote_entries(*remotes))


def providers(*names_kinds: tuple[str, str], reply: Any = None) -> dict[str, ProviderTransport]:
    return {name: ProviderTransport(kind, reply=reply or continuing(REPLY)) for name, kind in names_kinds}


def outcomes(result: Any) -> list[tuple[str, str]]:
    return [(a.backend, str(a.outcome)) for a in result.attempts]


def codes(result: Any) -> list[str]:
    return [r.code for r in result.trace]


# -- each provider's protocol, unary and streaming -----------------------------------------------

@pytest.mark.parametrize("kind,tier", [("openai", "onprem"), ("openai", "cloud"), ("anthropic", "cloud"),
                                       ("gemini", "cloud")])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_each_provider_answers_unary_and_streaming(tmp_path, kind, tier, stream):
    p = providers(("remote-1", kind))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml((tier, "remote-1", kind))), p) as core:
            r, events = await core.ask(stream=stream)
        assert r.text == REPLY and r.backend == "remote-1" and r.tier == Tier(tier)
        assert r.completion_tokens == len(REPLY.split()) and r.prompt_tokens > 0
        assert outcomes(r) == [("remote-1", "ok")] and not r.degraded
        if stream:
            assert sum(1 for e in events if isinstance(e, str)) > 3
        assert "Tell me about the fox." in json.dumps(p["remote-1"].requests[-1].body)

    run(scenario())


# -- every fault: a full answer from the next backend ---------------------------------------------

FAULTS = [
    ("refused", Fault("refuse"), "retryable_error"),
    ("hang", Fault("hang"), "retryable_error"),
    ("http_500", Fault("status", status=500), "retryable_error"),
    ("http_429", Fault("status", status=429, retry_after=30), "retryable_error"),
    ("malformed_json", Fault("malformed_json"), "retryable_error"),
    ("unauthorized", Fault("unauthorized"), "misconfigured"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("name,fault,expected", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_fails_over_to_the_next_backend(tmp_path, name, fault, expected, stream):
    p = providers(("lan", "openai"), ("claude", "anthropic"))
    p["lan"].set_fault(fault)

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), ("cloud", "claude", "anthropic"))
        async with Core(core_settings(tmp_path, toml), p) as core:
            r, _ = await core.ask(stream=stream, timeout=8)
        assert r.text == REPLY and r.backend == "claude"
        assert outcomes(r)[0] == ("lan", expected) and outcomes(r)[-1] == ("claude", "ok")
        assert "FAILOVER" in codes(r) and r.attempts[0].detail

    run(scenario())


@pytest.mark.parametrize("claude_reply", ["afresh", "continuing"])
def test_stream_cut_midway_continues_on_the_next_backend_and_says_so(tmp_path, claude_reply):
    """Anthropic is asked to continue by instruction; whether its model starts afresh or
    continues after repeating the last word, the client sees the answer once."""
    p = providers(("lan", "openai"), ("claude", "anthropic"),
                  reply=continuing(REPLY) if claude_reply == "continuing" else REPLY)
    p["lan"].set_fault(Fault("cut_stream", after_events=4))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), ("cloud", "claude", "anthropic"))
        async with Core(core_settings(tmp_path, toml), p) as core:
            r, events = await core.ask(stream=True)
        notices = [i for i, e in enumerate(events) if isinstance(e, Notice)]
        assert len(notices) == 1 and events[notices[0]].reason.code == "FAILOVER_MID_STREAM"
        before = "".join(e for e in events[:notices[0]] if isinstance(e, str))
        assert before and "".join(e for e in events if isinstance(e, str)) == r.text == REPLY
        partial, last = p["claude"].requests[-1].body["messages"][-2:]  # asked to continue, not restart
        assert partial == {"role": "assistant", "content": before} and last["content"] == CONTINUE_INSTRUCTION
        assert outcomes(r) == [("lan", "retryable_error"), ("claude", "ok")]

    run(scenario())


def test_a_continuation_asks_for_what_is_left_and_every_backends_tokens_count(tmp_path):
    """Cut after 4 tokens of a 30-token request: the next backend is asked for the 26 left,
    and usage and cost count both backends' tokens (each at its own price)."""
    p = providers(("lan", "openai"), ("claude", "anthropic"))
    p["lan"].set_fault(Fault("cut_stream", after_events=4))
    prices = "".join(f'[[cost.prices]]\nprovider = "{k}"\nmodel = "test-model"\ninput_per_mtok = 1.0\n'
                     f'output_per_mtok = {out}\n' for k, out in (("openai", 1000.0), ("anthropic", 2000.0)))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), ("cloud", "claude", "anthropic"), extra="[cost]\n" + prices)
        async with Core(core_settings(tmp_path, toml), p) as core:
            r, _ = await core.ask(stream=True, max_tokens=30)
        continuation = p["claude"].requests[-1].body
        assert continuation["max_tokens"] == 30 - 4
        claude_tokens = len(REPLY.split()) - 4  # what it sent after the trimmed repeat, as it counts them
        assert r.completion_tokens >= 4 + claude_tokens
        lan_cost = 4 * 1000.0 / 1e6
        assert r.cost_usd > lan_cost + claude_tokens * 2000.0 / 1e6 - 1e-9

    run(scenario())


def test_all_remote_tiers_down_serves_locally_marked_degraded(tmp_path):
    p = providers(("lan", "openai"), ("gem", "gemini"))
    p["lan"].set_fault(Fault("refuse"))
    p["gem"].set_fault(Fault("status", status=503))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), ("cloud", "gem", "gemini"))
        async with Core(core_settings(tmp_path, toml), p) as core:
            for stream in (False, True):
                r, _ = await core.ask(stream=stream)
                assert r.text == LOCAL_REPLY and r.tier == Tier.LOCAL and r.degraded
                degraded = next(x for x in r.trace if x.code == "DEGRADED_LOCAL")
                assert "gem" in degraded.detail and "lan" in degraded.detail
            with pytest.raises(Unavailable, match="lan"):
                await core.ask(preference=Preference.CLOUD_ONLY)

    run(scenario())


def test_provider_400_is_invalid_argument_without_retry_or_failover(tmp_path):
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("status", status=400))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("onprem", "lan", "openai"))), p) as core:
            with pytest.raises(InvalidArgument, match="lan"):
                await core.ask()
            assert core.status().backends[0].breaker == "closed"  # it answered: the request was at fault
        assert len(p["lan"].requests) == 1

    run(scenario())


def test_retry_after_is_honoured_when_the_deadline_allows(tmp_path):
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("status", status=429, retry_after=0.05, times=1))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("onprem", "lan", "openai"))), p) as core:
            r, _ = await core.ask()
        assert r.backend == "lan" and outcomes(r) == [("lan", "retryable_error"), ("lan", "ok")]
        first, second = p["lan"].requests
        assert second.at - first.at >= 0.05

    run(scenario())


def test_retry_after_longer_than_the_deadline_moves_on_at_once(tmp_path):
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("status", status=429, retry_after=60))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("onprem", "lan", "openai"))), p) as core:
            r, _ = await core.ask(timeout=5)
        assert r.tier == Tier.LOCAL and ("lan", "no_time") in outcomes(r) and len(p["lan"].requests) == 1

    run(scenario())


def test_flapping_provider_loses_no_request_and_opens_on_the_failure_rate(tmp_path):
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("flap"))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), resilience={"breaker_failures": 50})
        async with Core(core_settings(tmp_path, toml), p) as core:
            results = [(await core.ask())[0] for _ in range(12)]
            assert core.status().backends[0].breaker_opened_total >= 1
        assert all(r.text in (REPLY, LOCAL_REPLY) for r in results)
        # Each 503 is retried on the same backend and the retry lands on an "up" phase...
        assert [outcomes(r) for r in results[:4]] == [[("lan", "ok")]] + [[("lan", "retryable_error"), ("lan", "ok")]] * 3
        # ...until half of the breaker's window has failed: then it opens.
        assert any(("lan", "breaker_open") in outcomes(r) for r in results[4:])

    run(scenario())


# -- breakers, on a fake clock ----------------------------------------------------------------------

def test_breaker_opens_skips_at_no_cost_lets_one_probe_through_and_closes_on_recovery(tmp_path):
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("status", status=500))
    clock = FakeClock()

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"),
                          resilience={"max_retries": 0, "breaker_failures": 2, "breaker_cooldown_s": 1.5})
        async with Core(core_settings(tmp_path, toml), p, clock=clock) as core:
            for _ in range(2):
                assert (await core.ask())[0].tier == Tier.LOCAL
            assert core.status().backends[0].breaker == "open" and core.status().network == "down"
            for _ in range(5):  # open: skipped at no cost, the provider sees nothing
                r, _ = await core.ask()
                assert outcomes(r)[0] == ("lan", "breaker_open") and r.attempts[0].latency_ms == 0
            assert len(p["lan"].requests) == 2
            clock.advance(1.6)  # after the cooldown, one probe among concurrent requests
            await asyncio.gather(*(core.ask() for _ in range(4)))
            assert len(p["lan"].requests) == 3
            assert core.status().backends[0].retry_in_s > 1.5  # the repeat offender waits longer
            p["lan"].set_fault(None)
            clock.advance(core.status().backends[0].retry_in_s)
            assert (await core.ask())[0].backend == "lan"
            assert core.status().backends[0].breaker == "closed" and core.status().network == "up"

    run(scenario())


def test_a_probe_returns_traffic_before_the_cooldown_ends(tmp_path):
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("refuse"))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"),
                          resilience={"max_retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 600})
        async with Core(core_settings(tmp_path, toml), p, clock=FakeClock()) as core:
            assert (await core.ask())[0].tier == Tier.LOCAL
            states = list(core.engine.runtime.remotes.values())
            await probe_once(states)  # still refused: stays open
            assert core.status().backends[0].breaker == "open"
            p["lan"].set_fault(None)
            await probe_once(states)
            assert (await core.ask())[0].backend == "lan"

    run(scenario())


def test_a_hung_backend_is_found_out_by_the_background_probe_not_by_clients(tmp_path):
    """Real clock: once the breaker opens on a hang, the background probe (a short model
    listing) keeps it open while the hang lasts, so no client request waits on it; when
    the hang ends, the probe brings it back."""
    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("hang"))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), resilience={
            "max_retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 0.5, "probe_interval_s": 0.2})
        async with Core(core_settings(tmp_path, toml), p) as core:
            assert (await core.ask())[0].tier == Tier.LOCAL  # the one request that found the hang (0.3 s)
            for _ in range(15):  # 1.5 s: three cooldowns' worth
                r, _ = await core.ask()
                assert outcomes(r)[0] == ("lan", "breaker_open") and r.attempts[0].latency_ms == 0
                await asyncio.sleep(0.1)
            chats = [x for x in p["lan"].requests if x.method == "POST"]
            assert len(chats) == 1  # every later look was the probe's GET
            assert any(x.method == "GET" for x in p["lan"].requests)
            p["lan"].set_fault(None)
            for _ in range(30):
                await asyncio.sleep(0.1)
                if core.status().backends[0].retry_in_s == 0 and not core.status().backends[0].probing:
                    break
            assert (await core.ask())[0].backend == "lan"
            assert core.status().backends[0].breaker == "closed"

    run(scenario())


@pytest.mark.parametrize("status", [404, 401])
def test_a_backend_out_of_rotation_comes_back_when_its_recheck_answers_right(tmp_path, status):
    """A 404 (a proxy with the wrong route) or a 401 takes a backend out; a re-check with a
    backoff brings it back once its model list answers 2xx, without a restart."""
    from edge.pipeline import candidates

    p = providers(("lan", "openai"))
    p["lan"].set_fault(Fault("status", status=status))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("onprem", "lan", "openai"))), p) as core:
            r, _ = await core.ask()
            assert r.tier == Tier.LOCAL and outcomes(r)[0] == ("lan", "misconfigured")
            st = core.engine.runtime.remotes["lan"]
            assert st.out_of_rotation and 0 < st.recheck_in() <= candidates.RECHECK_BASE_S
            st.recheck_at = 1.0  # the re-check is due (its backoff is a minute)
            await candidates.probe_once([st])  # still failing: out, the next re-check twice as far
            assert st.out_of_rotation and st.recheck_in() > candidates.RECHECK_BASE_S
            p["lan"].set_fault(None)
            st.recheck_at = 1.0
            await candidates.probe_once([st])
            assert not st.out_of_rotation and core.status().backends[0].out_of_rotation == ""
            assert (await core.ask())[0].backend == "lan"

    run(scenario())


def test_misconfigured_backend_is_taken_out_of_rotation_with_a_status_entry(tmp_path):
    p = providers(("claude", "anthropic"))
    p["claude"].set_fault(Fault("unauthorized"))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("cloud", "claude", "anthropic"))), p) as core:
            r, _ = await core.ask()
            assert r.tier == Tier.LOCAL and outcomes(r)[0] == ("claude", "misconfigured")
            r, _ = await core.ask()
            assert outcomes(r)[0] == ("claude", "out_of_rotation")
            assert "401" in core.status().backends[0].out_of_rotation
        assert len(p["claude"].requests) == 1

    run(scenario())


def test_onprem_pool_balances_by_least_outstanding_requests(tmp_path):
    p = providers(("lan-a", "openai"), ("lan-b", "openai"))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan-a", "openai"), ("onprem", "lan-b", "openai"))
        async with Core(core_settings(tmp_path, toml), p) as core:
            served = [r.backend for r, _ in await asyncio.gather(*(core.ask(stream=True) for _ in range(4)))]
        # Config order alone would send all four to lan-a; least outstanding splits them.
        assert sorted(served) == ["lan-a", "lan-a", "lan-b", "lan-b"]

    run(scenario())


# -- what never leaves the device -------------------------------------------------------------------

def test_local_only_request_config_and_offline_mode_send_nothing(tmp_path):
    p = providers(("lan", "openai"))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("onprem", "lan", "openai"))), p) as core:
            r, _ = await core.ask(preference=Preference.LOCAL_ONLY)
            assert r.text == LOCAL_REPLY and codes(r) == ["PREF_LOCAL_ONLY"]
        for extra, code in (("local_only = true", "CONFIG_LOCAL_ONLY"), ("offline = true", "OFFLINE_MODE")):
            toml = chain_toml(("onprem", "lan", "openai"), extra=f'[routing]\nstrategy = "chain"\n{extra}\n')
            async with Core(core_settings(tmp_path, toml), p) as core:
                r, _ = await core.ask(stream=True)
                assert r.text == LOCAL_REPLY and codes(r) == [code]
                assert not r.degraded  # local by configuration: what was asked for, not less
                # The status says what the configuration does, not whether a backend is up.
                assert core.status().network == ("local-only" if code == "CONFIG_LOCAL_ONLY" else "offline")
                # Offline: no remote backend is even built, so nothing can contact one, not even a probe.
                assert bool(core.engine.runtime.remotes) == (code == "CONFIG_LOCAL_ONLY")
                with pytest.raises(Unavailable):
                    await core.ask(preference=Preference.CLOUD_ONLY)
        assert p["lan"].requests == []

    run(scenario())


@pytest.mark.parametrize("mode", ["keep_local", "redact"])
def test_pii_is_kept_local_or_redacted_and_put_back(tmp_path, mode):
    p = providers(("lan", "openai"), reply=lambda body: "Write to [EMAIL_1] today.")

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), extra=f'[privacy]\npii = "{mode}"\n')
        async with Core(core_settings(tmp_path, toml), p) as core:
            r, _ = await core.ask("Email ada@example.com about the fox.", stream=True)
        if mode == "keep_local":
            assert r.tier == Tier.LOCAL and "PII_KEEP_LOCAL" in codes(r) and p["lan"].requests == []
        else:
            sent = json.dumps(p["lan"].requests[-1].body)
            assert "ada@example.com" not in sent and "[EMAIL_1]" in sent
            assert r.backend == "lan" and r.text == "Write to ada@example.com today." and "PII_REDACTED" in codes(r)

    run(scenario())


# -- the cost gate ------------------------------------------------------------------------------------

PRICES = """
[[cost.prices]]
provider = "openai"
model = "test-model"
input_per_mtok = 1000.0
output_per_mtok = 2000.0
"""


def test_cost_ceiling_and_budget_keep_requests_local_with_the_reason(tmp_path):
    p = providers(("cloud", "openai"))

    async def scenario() -> None:
        toml = chain_toml(("cloud", "cloud", "openai"), extra=f'[cost]\nmax_cost_per_request_usd = 0.01\n{PRICES}')
        async with Core(core_settings(tmp_path, toml), p) as core:
            r, _ = await core.ask(max_tokens=1000)  # up to $2 at max_tokens
            assert r.tier == Tier.LOCAL and "COST_OVER_COST_CEILING" in codes(r)
            r, _ = await core.ask(max_tokens=2)
            assert r.backend == "cloud" and r.cost_usd > 0
        budget = chain_toml(("cloud", "cloud", "openai"), extra=f'[cost]\ndaily_budget_usd = {r.cost_usd * 1.5}\n{PRICES}')
        async with Core(core_settings(tmp_path, budget), p) as core:  # the same ledger: one answer already spent
            r, _ = await core.ask(max_tokens=2)
            assert r.tier == Tier.LOCAL and "COST_OVER_BUDGET" in codes(r)
        assert len(p["cloud"].requests) == 1

    run(scenario())


# -- routing signals and the cascade ---------------------------------------------------------------------

class FixedDifficulty:
    """A classifier that scores every prompt the same."""

    encoder = None

    def __init__(self, score: float) -> None:
        self._score = score

    def score(self, messages: Any) -> float:
        return self._score


def smart_toml(*, local: str = "", routing: str = "") -> str:
    return (fake_config(reply="Paris is the capital. More text follows here.", extra=local)
            + f"[routing]\nstrategy = \"smart\"\ncascade_holdback_tokens = 8\n{routing}\n"
            + "[resilience]\nbackoff_base_s = 0.001\nprobe_interval_s = 600\n"
            + remote_entries(("cloud", "cloud", "openai")))


@pytest.mark.parametrize("score,where,code", [(0.9, Tier.CLOUD, "DIFFICULTY_HIGH"), (0.1, Tier.LOCAL, "DIFFICULTY_LOW")])
def test_difficulty_decides_between_local_and_remote(tmp_path, score, where, code):
    async def scenario() -> None:
        toml = smart_toml(routing="cascade = false")
        async with Core(core_settings(tmp_path, toml), providers(("cloud", "openai")), load=FixedLoad(),
                        classifier=FixedDifficulty(score)) as core:
            r, _ = await core.ask()
        assert r.tier == where and code in codes(r)

    run(scenario())


@pytest.mark.parametrize("rate_now,where,code", [(88.0, Tier.LOCAL, "DIFFICULTY_LOW"),
                                                 (30.0, Tier.CLOUD, "LOAD_LOCAL_SLOW")])
def test_other_programs_cpu_counts_only_when_it_slows_the_local_model(tmp_path, rate_now, where, code):
    """97% CPU from other programs: while the model keeps its profiled rate the request
    stays local; when its measured rate falls to a third, it goes remote."""
    busy = LoadSample(cpu_percent=97.0, memory_percent=20.0, battery_percent=None, on_battery=False,
                      thermal_throttled=False)

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, smart_toml(routing="cascade = false")), providers(("cloud", "openai")),
                        load=FixedLoad(busy), classifier=FixedDifficulty(0.1)) as core:
            estimate = core.engine.runtime.estimates["fake"]
            estimate.seed(prompt_tps=500.0, gen_tps=90.0)  # as a hardware profile would
            estimate.gen_tps.value = rate_now               # as served requests measured it
            r, _ = await core.ask()
        assert r.tier == where and code in codes(r) and "LOAD_CPU" not in codes(r)

    run(scenario())


CASCADE = "difficulty_threshold = 1.0\ncascade_band = 0.0\ncascade_min_mean_logprob = -1.0\ncascade_min_token_logprob = -100"


@pytest.mark.parametrize("logprob,fault,breaker_open,expect", [
    (-0.1, None, False, "CASCADE_CONFIDENT"),
    (-5.0, None, False, "CASCADE_ESCALATED"),
    (-5.0, Fault("status", status=503), False, "DEGRADED_LOCAL"),
    (-5.0, None, True, "CASCADE_KEPT_LOCAL"),
], ids=["confident", "escalated", "escalation_failed", "nowhere_to_go"])
def test_cascade_judges_the_local_answer(tmp_path, logprob, fault, breaker_open, expect):
    p = providers(("cloud", "openai"), reply=lambda body: "Paris.")
    p["cloud"].set_fault(fault)

    async def scenario() -> None:
        toml = smart_toml(local=f"fake_logprob = {logprob}", routing=CASCADE)
        async with Core(core_settings(tmp_path, toml), p, load=FixedLoad(), classifier=FixedDifficulty(0.5),
                        clock=FakeClock()) as core:
            if breaker_open:
                for st in core.engine.runtime.remotes.values():
                    for _ in range(10):
                        st.breaker.record_failure()
            r, events = await core.ask(stream=True)
        assert expect in codes(r) + [e.reason.code for e in events if isinstance(e, Notice)]
        local_attempts = [a for a in r.attempts if a.backend == "local"]
        if expect == "CASCADE_CONFIDENT":
            assert r.backend == "local" and not r.degraded and not p["cloud"].requests
        elif expect == "CASCADE_ESCALATED":
            # The unconfident local text never reached the client: only the remote answer did.
            assert r.backend == "cloud" and "".join(e for e in events if isinstance(e, str)) == "Paris."
            # A deliberate escalation is not a failure: no FAILOVER in the trace.
            assert "FAILOVER" not in codes(r)
            assert r.timings.tokens_per_second == 0.0  # a rate is the local model's only
            assert local_attempts[0].outcome == Outcome.LOW_CONFIDENCE
        elif expect == "DEGRADED_LOCAL":
            assert r.backend == "local" and r.degraded and [a.outcome for a in local_attempts] == [
                Outcome.LOW_CONFIDENCE, Outcome.OK]
        else:
            assert r.backend == "local" and r.degraded and len(local_attempts) == 1 and not p["cloud"].requests

    run(scenario())


def test_answers_and_failures_are_recorded_in_the_ledger(tmp_path):
    """One recorder for every ending: the ledger holds a row for an answer and for a refusal."""
    from edge.ledger import Ledger

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, chain_toml(("onprem", "lan", "openai"))),
                        providers(("lan", "openai"))) as core:
            await core.ask(request_id="ok-1")
            with pytest.raises(InvalidArgument, match="params.temperature"):
                await core.ask(request_id="bad-1", temperature=5.0)

    run(scenario())
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        rows = {e.request_id: e.outcome for e in ledger.entries()}
    assert rows == {"ok-1": "ok", "bad-1": "INVALID_ARGUMENT"}


# Each field a remote tier receives, with a value spelled as an outside probe spelled it.
PII_FIELDS = [
    ("stop sequence", {"text": "Tell me about the fox.", "stop": ["ada@example.com"]}, "ada@example.com"),
    ("card with dots", {"text": "Charge 4111.1111.1111.1111 for the fox."}, "4111.1111.1111.1111"),
    ("fullwidth e-mail", {"text": "Write to ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ about the fox."}, "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ("zero-width IBAN", {"text": "Pay DE89\u200b3704\u200b0044\u200b0532\u200b0130\u200b00 for the fox."},
     "DE89\u200b3704\u200b0044\u200b0532\u200b0130\u200b00"),
]


@pytest.mark.parametrize("mode", ["keep_local", "redact"])
@pytest.mark.parametrize("field,ask,value", PII_FIELDS, ids=[f[0] for f in PII_FIELDS])
def test_no_field_carries_personal_data_to_a_remote_tier(tmp_path, mode, field, ask, value):
    p = providers(("lan", "openai"))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), extra=f'[privacy]\npii = "{mode}"\n')
        async with Core(core_settings(tmp_path, toml), p) as core:
            r, _ = await core.ask(ask["text"], stream=True, stop=ask.get("stop", ()))
        sent = json.dumps([seen.body for seen in p["lan"].requests], ensure_ascii=False)
        assert value not in sent and value.replace("\u200b", "") not in sent
        if mode == "keep_local":
            assert r.tier == Tier.LOCAL and p["lan"].requests == []
        else:
            assert r.backend == "lan" and "PII_REDACTED" in codes(r)

    run(scenario())


def test_a_value_split_between_messages_never_leaves_whole_or_in_parts(tmp_path):
    p = providers(("lan", "openai"))

    async def scenario() -> None:
        toml = chain_toml(("onprem", "lan", "openai"), extra='[privacy]\npii = "redact"\n')
        async with Core(core_settings(tmp_path, toml), p) as core:
            events = [e async for e in core.engine.serve(
                Draft(messages=[("user", "my card is 4111 1111"), ("assistant", "go on"), ("user", "1111 1111 ok")]),
                Arrival("split", "test", stream=False, time_remaining=10))]
        sent = json.dumps(p["lan"].requests[-1].body)
        assert "4111" not in sent and sent.count("[CARD_1]") == 2 and "PII_REDACTED" in codes(events[-1])

    run(scenario())


# -- one client's flood never refuses, or starves, another's request ---------------------------------

def test_a_clients_flood_leaves_room_and_turns_for_another_client(tmp_path):
    from edge.errors import Overloaded

    async def scenario() -> None:
        toml = fake_config(reply="one two three", token_delay_ms=20, queue_size=4)  # 3 places per client
        async with Core(core_settings(tmp_path, toml), {}) as core:
            finished: list[str] = []

            async def ask(tenant: str, n: int) -> str:
                events = [e async for e in core.engine.serve(
                    Draft(messages=[("user", "hi")]), Arrival(f"{tenant}-{n}", "test", stream=False,
                                                              time_remaining=30, tenant=tenant))]
                finished.append(tenant)
                return events[-1].text

            flood = [asyncio.create_task(ask("alice", n)) for n in range(6)]
            await asyncio.sleep(0)  # alice's six arrive first
            bob = asyncio.create_task(ask("bob", 0))
            results = await asyncio.gather(*flood, bob, return_exceptions=True)
        refused = [r for r in results if isinstance(r, Overloaded)]
        assert len(refused) == 3 and all("this client already has 3" in str(r) for r in refused)
        assert results[-1] == "one two three"  # bob was not refused: the queue had room
        assert finished.index("bob") <= 1  # and took his turn after alice's running request, not after all

    run(scenario())


# -- the teacher: escalations become labels --------------------------------------------------------

@pytest.mark.parametrize("remote,agrees", [("41", True), ("42", False)])
def test_an_escalated_cascade_answer_becomes_a_label_without_text(tmp_path, remote, agrees):
    from edge.calibration.store import CalibrationStore

    p = providers(("cloud", "openai"), reply=lambda body: remote)

    async def scenario() -> None:
        toml = (fake_config(reply="It is 41. More words follow here.", extra="fake_logprob = -5.0")
                + f"[routing]\nstrategy = \"smart\"\ncascade_holdback_tokens = 8\n{CASCADE}\n"
                + "[resilience]\nbackoff_base_s = 0.001\nprobe_interval_s = 600\n"
                + remote_entries(("cloud", "cloud", "openai")))
        async with Core(core_settings(tmp_path, toml), p, load=FixedLoad(),
                        classifier=FixedDifficulty(0.5)) as core:
            r, _ = await core.ask("What is 6 * 7 - 1?")
            assert r.backend == "cloud" and r.text == remote  # the client got the remote answer

    run(scenario())
    store = CalibrationStore(tmp_path / "ledger.calibration.sqlite3")
    try:
        [label] = store.labels()
    finally:
        store.close()
    assert (label.source, label.agrees, label.rule) == ("cascade", agrees, "numbers")
    assert label.difficulty == 0.5 and label.conf_mean == pytest.approx(-5.0) and label.tokens >= 1
    assert label.prompt is None and label.local_text is None and label.remote_text is None  # no text by default
    assert stat.S_IMODE((tmp_path / "ledger.calibration.sqlite3").stat().st_mode) == 0o600


# -- shadow sampling ---------------------------------------------------------------------------------

def shadow_toml(*, extra: str = "", routing: str = "") -> str:
    return (fake_config(reply="It is 41. More words.", shadow_rate=1.0)
            + f"[routing]\nstrategy = \"smart\"\ncascade = false\n{routing}\n{extra}\n"
            + "[resilience]\nbackoff_base_s = 0.001\nprobe_interval_s = 600\n"
            + remote_entries(("cloud", "cloud", "openai"), timeout_s=5))



@pytest.mark.parametrize("case", ["local_only", "pii", "offline", "over_budget"])
def test_a_request_that_may_not_leave_the_device_is_never_shadowed(tmp_path, case):
    p = providers(("cloud", "openai"), reply=lambda body: "41")
    extra = {"offline": "offline = true", "local_only": "", "pii": "", "over_budget": ""}[case]
    cost = f"[cost]\ndaily_budget_usd = 0.000001\n{PRICES}" if case == "over_budget" else ""

    async def scenario() -> None:
        toml = shadow_toml(routing=extra, extra=cost)
        async with Core(core_settings(tmp_path, toml), p, load=FixedLoad(),
                        classifier=FixedDifficulty(0.1)) as core:
            text = "Email ada@example.com: what is 6 * 7 - 1?" if case == "pii" else "What is 6 * 7 - 1?"
            preference = Preference.LOCAL_ONLY if case == "local_only" else Preference.AUTO
            for _ in range(3):
                r, _ = await core.ask(text, preference=preference)
                assert r.tier == Tier.LOCAL
            await core.engine.close_shadows()
        assert p["cloud"].requests == []  # zero bytes to the remote tier

    run(scenario())


def test_a_shadow_in_flight_holds_its_cost_on_the_fleet_lease(tmp_path):
    """A shadow passes the cost gate again when it starts: it holds its estimate on the
    fleet's lease until it settles, so a request planned meanwhile cannot spend the same
    money."""
    from edge.fleet.budget import FleetBudget

    p = providers(("cloud", "openai"), reply=lambda body: "42")
    p["cloud"].set_fault(Fault("hang", times=1))  # the first shadow stays in flight

    async def scenario() -> None:
        toml = shadow_toml(extra=f"[cost]\n{PRICES}")
        async with Core(core_settings(tmp_path, toml), p, load=FixedLoad(), classifier=FixedDifficulty(0.1)) as core:
            fleet = FleetBudget(link=None, limit_usd=10.0)  # no server needed: the lease is held in memory
            fleet.lease_left = 10.0
            core.engine.runtime.cost_gate.fleet = fleet
            r, _ = await core.ask("What is 6 * 7 - 1?", request_id="first")
            assert r.tier == Tier.LOCAL
            await asyncio.sleep(0.05)  # the shadow starts and hangs
            assert len(p["cloud"].requests) == 1
            held = fleet._holds["first:shadow"][0]  # noqa: SLF001 - the hold is the behaviour under test
            assert held > 0 and core.engine.shadow is not None and core.engine.shadow.started_total == 1
            fleet.lease_left = held * 1.5  # what is left of the lease: one shadow's worth, not two
            with pytest.raises(Unavailable, match="lease of the fleet budget has"):  # held by the shadow
                await core.ask("What is 6 * 7 - 1?", request_id="second", preference=Preference.CLOUD_ONLY)
            await core.engine.close_shadows()
        assert len(p["cloud"].requests) == 1  # only the first shadow ever reached the provider

    run(scenario())


def test_a_local_answer_is_shadowed_after_the_client_has_it_and_labelled(tmp_path):
    from edge.calibration.store import CalibrationStore
    from edge.ledger import Ledger

    p = providers(("cloud", "openai"), reply=lambda body: "42")
    p["cloud"].set_fault(Fault("hang", times=1))  # the first shadow never answers: the client must not wait

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, shadow_toml(extra=f"[cost]\n{PRICES}")), p, load=FixedLoad(),
                        classifier=FixedDifficulty(0.1)) as core:
            r, _ = await core.ask("What is 6 * 7 - 1?")
            assert r.tier == Tier.LOCAL and r.text == "It is 41. More words."  # answered; the shadow hangs on
            await asyncio.sleep(0)  # let the shadow send its request
            assert len(p["cloud"].requests) == 1
            await core.engine.close_shadows()  # the hung one is dropped
            r, _ = await core.ask("What is 6 * 7 - 1?")  # this one's shadow answers
            await core.engine.close_shadows(wait=True)

    run(scenario())
    store = CalibrationStore(tmp_path / "ledger.calibration.sqlite3")
    try:
        labels = store.labels()
    finally:
        store.close()
    assert [(x.source, x.agrees, x.rule, x.difficulty) for x in labels] == [("shadow", False, "numbers", 0.1)]
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        shadows = [e for e in ledger.entries() if e.reasons == ["SHADOW"]]
    assert len(shadows) == 1 and shadows[0].tier == "cloud" and shadows[0].cost_usd > 0
