"""Provider fidelity, in process: what each provider's own API refuses, bills and reports,
and what edge does about it (edge.backends.capabilities; issue findings 1-7).

The emulators hold the services' rules (edge.testing._wire.refusal: each is a 400 with
the service's words), so a request edge should not send fails here as it would there.
The official SDKs hold the emulators to the wire in tests/test_provider_sdks.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from edge.errors import InvalidArgument
from edge.testing._wire import refusal
from edge.testing.providers import Fault
from edge.testing.transport import ProviderTransport
from edge.types import Tier

from .conftest import Core, core_settings, fake_config

REPLY = "The quick brown fox jumps over the lazy dog near the quiet river bank today."
LOCAL_REPLY = "local answer"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def entry(tier: str, name: str, kind: str, model: str = "test-model", extra: str = "") -> str:
    return f"""
[[{tier}]]
name = "{name}"
kind = "{kind}"
base_url = "http://{name}"
model = "{model}"
connect_timeout_s = 0.3
first_byte_timeout_s = 0.3
idle_timeout_s = 0.3
total_timeout_s = 10
{extra}
"""


def toml(*entries: str, resilience: str = "") -> str:
    return (fake_config(reply=LOCAL_REPLY) + '[routing]\nstrategy = "chain"\n'
            + f"[resilience]\nbackoff_base_s = 0.001\nprobe_interval_s = 600\n{resilience}\n" + "".join(entries))


def outcomes(result: Any) -> list[tuple[str, str]]:
    return [(a.backend, str(a.outcome)) for a in result.attempts]


# -- 1. Anthropic sampling ------------------------------------------------------------------------------

def test_the_emulated_anthropic_api_refuses_what_the_adapter_used_to_send():
    """The wire edge sent before: temperature and top_p together (and up to 2.0)."""
    legacy = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert "cannot both be specified" in refusal("anthropic", {**legacy, "temperature": 0.5, "top_p": 0.9},
                                                 version="2023-06-01")
    assert "less than or equal to 1" in refusal("anthropic", {**legacy, "temperature": 1.5}, version="2023-06-01")
    assert "Extra inputs" in refusal("anthropic", {**legacy, "temperature": 0.5}, version="2026-10-21")


@pytest.mark.parametrize("api_version", ["", "2023-06-01"])
def test_anthropic_serves_a_request_with_both_sampling_parameters_set(tmp_path, api_version):
    p = {"claude": ProviderTransport("anthropic", reply=REPLY)}
    extra = f'api_version = "{api_version}"' if api_version else ""

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "claude", "anthropic", extra=extra))), p) as core:
            r, _ = await core.ask(temperature=1.5, top_p=0.9)
        assert r.backend == "claude" and r.text == REPLY and outcomes(r) == [("claude", "ok")]
        body = p["claude"].requests[-1].body
        if api_version:
            assert body["temperature"] == 1.0 and "top_p" not in body  # clamped to 0-1; one of the two
        else:
            assert "temperature" not in body and "top_p" not in body  # the current API takes neither

    run(scenario())


# -- 4. account-level failures --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_an_account_failure_takes_the_backend_out_of_rotation_and_fails_over(tmp_path, kind):
    """OpenAI's 429 insufficient_quota, Anthropic's 400 "credit balance is too low", Gemini's
    400 FAILED_PRECONDITION: not the client's fault and not passing; the next backend
    answers, the broken one is not asked again, and status says why."""
    p = {"first": ProviderTransport(kind, reply=REPLY), "second": ProviderTransport("openai", reply=REPLY)}
    p["first"].set_fault(Fault("account"))

    async def scenario() -> None:
        settings = core_settings(tmp_path, toml(entry("cloud", "first", kind), entry("cloud", "second", "openai")))
        async with Core(settings, p) as core:
            r1, _ = await core.ask()
            r2, _ = await core.ask()
            status = core.status()
        assert r1.backend == r2.backend == "second" and r1.text == REPLY
        assert outcomes(r1) == [("first", "misconfigured"), ("second", "ok")]
        assert outcomes(r2)[0] == ("first", "out_of_rotation")
        assert len(p["first"].requests) == 1  # one request, no retry
        first = next(b for b in status.backends if b.name == "first")
        assert "account" in first.out_of_rotation

    run(scenario())


# -- 5. blocked content ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_a_blocked_answer_says_so(tmp_path, kind, stream):
    p = {"cloud": ProviderTransport(kind, reply=REPLY)}
    p["cloud"].set_fault(Fault("blocked", after_events=3))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "cloud", kind))), p) as core:
            r, _ = await core.ask(stream=stream)
        assert r.backend == "cloud" and r.finish_reason == "content_filter"
        assert r.text == " ".join(REPLY.split()[:3])

    run(scenario())


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_a_blocked_answer_falls_back_when_configured(tmp_path, kind):
    p = {"cloud": ProviderTransport(kind, reply=REPLY)}
    p["cloud"].set_fault(Fault("blocked", after_events=0))

    async def scenario() -> None:
        settings = core_settings(tmp_path, toml(entry("cloud", "cloud", kind),
                                                resilience='on_content_filter = "fallback"'))
        async with Core(settings, p) as core:
            r, events = await core.ask(stream=True)
        assert r.tier == Tier.LOCAL and r.text == LOCAL_REPLY and r.finish_reason == "stop"
        assert outcomes(r) == [("cloud", "content_filter"), ("local", "ok")]
        assert "CONTENT_FILTER_FALLBACK" in [e.reason.code for e in events if hasattr(e, "reason")]

    run(scenario())


# -- 6. Gemini thinking ---------------------------------------------------------------------------------

def test_the_emulated_thinking_model_spends_a_small_budget_on_thoughts_without_a_thinking_config():
    """What edge faced before: 2.5 Flash thinks by default, from the same maxOutputTokens."""
    from edge.testing._wire import GEMINI_DEFAULT_THOUGHTS, _plan

    plan = _plan("gemini", {"contents": [], "generationConfig": {"maxOutputTokens": 32}}, REPLY, "gemini-2.5-flash")
    assert plan.pieces == [] and plan.thoughts == 32 <= GEMINI_DEFAULT_THOUGHTS


@pytest.mark.parametrize("model,budget,extra", [("gemini-2.5-flash", 0, ""), ("gemini-2.5-pro", 128, ""),
                                                ("gemini-2.5-pro", 512, "thinking_budget = 512"),
                                                ("gemini-2.5-flash", 8, "thinking_budget = 8")])
def test_gemini_thinking_gets_a_budget_of_its_own_and_its_tokens_are_counted(tmp_path, model, budget, extra):
    p = {"gem": ProviderTransport("gemini", reply=REPLY)}

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "gem", "gemini", model, extra))), p) as core:
            r, _ = await core.ask(max_tokens=32)
        config = p["gem"].requests[-1].body["generationConfig"]
        assert config["thinkingConfig"] == {"thinkingBudget": budget} and config["maxOutputTokens"] == 32 + budget
        assert r.text == REPLY  # the answer kept the 32 tokens the client asked for
        thoughts = min(budget, 16)  # what the emulated model thinks with that budget
        assert r.completion_tokens == len(REPLY.split()) + thoughts  # billed as output

    run(scenario())


def test_a_model_that_does_not_think_gets_no_thinking_config(tmp_path):
    p = {"gem": ProviderTransport("gemini", reply=REPLY)}

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "gem", "gemini", "gemini-2.0-flash"))), p) as core:
            await core.ask(max_tokens=32)
        assert "thinkingConfig" not in p["gem"].requests[-1].body["generationConfig"]

    run(scenario())


# -- 7. per-provider limits -----------------------------------------------------------------------------

STOPS = ["zebra", "yak", "walrus", "vole", "lazy", "unicorn"]  # the fifth is in the reply


@pytest.mark.parametrize("kind,model,api,sent", [("openai", "gpt-4.1", "official", 4), ("openai", "o3", "official", 0),
                                                 ("openai", "m", "compatible", 6), ("gemini", "gemini-2.0-flash", "", 5)])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_stop_sequences_past_a_providers_limit_are_applied_by_edge(tmp_path, kind, model, api, sent, stream):
    p = {"cloud": ProviderTransport(kind, reply=REPLY, official=api == "official")}
    extra = f'api = "{api}"' if api else ""

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "cloud", kind, model, extra))), p) as core:
            r, _ = await core.ask(stream=stream, stop=STOPS)
        body = p["cloud"].requests[-1].body
        got = body.get("stop") if kind == "openai" else body["generationConfig"].get("stopSequences")
        assert (got or []) == STOPS[:sent]
        # The answer ends before "lazy" whoever cut it (the emulator drops the space before a stop).
        assert r.backend == "cloud" and r.text.rstrip() == REPLY[:REPLY.index("lazy")].rstrip()
        assert r.finish_reason == "stop"

    run(scenario())


def test_an_openai_reasoning_model_gets_no_sampling_parameters(tmp_path):
    p = {"cloud": ProviderTransport("openai", reply=REPLY, official=True)}

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "cloud", "openai", "o3", 'api = "official"'))),
                        p) as core:
            r, _ = await core.ask(temperature=0.3, top_p=0.5)
        body = p["cloud"].requests[-1].body
        assert r.text == REPLY and not {"temperature", "top_p", "stop"} & set(body)
        assert "max_completion_tokens" in body and "max_tokens" not in body

    run(scenario())


def test_an_openai_compatible_stream_that_ends_without_done_is_complete(tmp_path):
    p = {"lan": ProviderTransport("openai", reply=REPLY)}
    p["lan"].set_fault(Fault("no_done"))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("onprem", "lan", "openai"))), p) as core:
            r, _ = await core.ask(stream=True)
        assert r.backend == "lan" and r.text == REPLY and outcomes(r) == [("lan", "ok")]

    run(scenario())


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
def test_an_empty_turn_is_left_out_where_the_provider_refuses_it(tmp_path, kind):
    p = {"cloud": ProviderTransport(kind, reply=REPLY)}

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml(entry("cloud", "cloud", kind, "gemini-2.0-flash"))), p) as core:
            from edge.pipeline.admission import Arrival
            from edge.validation import Draft

            draft = Draft(messages=[("user", "Hi"), ("assistant", ""), ("user", "Tell me about the fox.")])
            events = [e async for e in core.engine.serve(draft, Arrival("r1", "test", stream=False))]
        assert events[-1].backend == "cloud" and events[-1].text == REPLY

    run(scenario())


@pytest.mark.parametrize("content", ["", "   \n"])
def test_a_request_whose_user_turns_hold_no_text_is_refused_naming_the_field(tmp_path, content):
    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml()), {}) as core:
            from edge.pipeline.admission import Arrival
            from edge.validation import Draft

            draft = Draft(messages=[("system", "Be brief."), ("user", content)])
            with pytest.raises(InvalidArgument) as info:
                [e async for e in core.engine.serve(draft, Arrival("r1", "test", stream=False))]
        assert info.value.field == "messages" and "empty" in str(info.value)

    run(scenario())


def test_status_shows_what_each_configured_backend_takes(tmp_path):
    p = {"o3": ProviderTransport("openai", official=True), "claude": ProviderTransport("anthropic"),
         "gem": ProviderTransport("gemini")}

    async def scenario() -> None:
        settings = core_settings(tmp_path, toml(entry("cloud", "o3", "openai", "o3", 'api = "official"'),
                                                entry("cloud", "claude", "anthropic"),
                                                entry("cloud", "gem", "gemini", "gemini-2.5-pro")))
        async with Core(settings, p) as core:
            snap = await asyncio.to_thread(core.engine.snapshot, budgets=False)
        from edge.server import _backends

        shown = {b.name: b.capabilities for b in _backends(snap)}  # what GetStatus (and `edge status`) carries
        assert shown["o3"] == "no temperature, no top_p, stop <= 0, continues by instruction"
        assert shown["claude"] == "no temperature, no top_p, stop, continues by instruction"
        assert shown["gem"] == ("temperature 0-2, top_p, stop <= 5, continues by instruction, "
                                "thinking always (min 128)")

    run(scenario())
