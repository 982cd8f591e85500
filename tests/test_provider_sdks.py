"""The official SDKs as the reference for the wire (versions pinned in pyproject's dev
dependencies: openai 3.57.0, anthropic 2.14.0, google-genai 3.6.1).

1. Every emulator (edge.testing.providers, real TCP) is exercised by its provider's SDK:
   unary, streaming and errors, with the SDK's strict response validation where it has
   one (openai and anthropic: `_strict_response_validation=True`), so an emulator that
   drifts from the wire fails here, not in the field.
2. Every adapter's request is compared field by field with the SDK's request for the
   same call, both recorded by the same emulator; the differences we choose are in
   ALLOWED, each with its reason. Headers compared: the key's header, the content type
   and the API version; the SDKs' telemetry headers (x-stainless-*, user-agent) are not
   part of the protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from edge.backends.anthropic import AnthropicBackend
from edge.backends.base import GenerationRequest, Message, SamplingParams
from edge.backends.gemini import GeminiBackend
from edge.backends.openai import OpenAIBackend
from edge.testing.providers import Fault, ProviderServer, RecordedRequest

KEY = "sk-test-key-123"
REPLY = "The quick brown fox jumps over the lazy dog."
WORDS = len(REPLY.split())


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ProviderServer]:
    kind, official = request.param
    srv = ProviderServer(kind, api_key=KEY, reply=REPLY, official=official, model="test-model").start()
    try:
        yield srv
    finally:
        srv.stop()


def openai_client(srv: ProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, _strict_response_validation=True)


def anthropic_client(srv: ProviderServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.base_url, api_key=KEY, max_retries=0, _strict_response_validation=True)


def gemini_client(srv: ProviderServer) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(
        base_url=srv.base_url, api_version="v1beta", retry_options=genai_types.HttpRetryOptions(attempts=1)))


# -- 1. the emulators, as each SDK sees them ------------------------------------------------------------

@pytest.mark.parametrize("server", [("openai", True)], indirect=True)
def test_openai_sdk_against_the_emulator(server):
    client = openai_client(server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about the fox."}]
    r = client.chat.completions.create(model="test-model", messages=messages, max_completion_tokens=64)
    assert r.choices[0].message.content == REPLY and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == WORDS
    chunks = list(client.chat.completions.create(model="test-model", messages=messages, max_completion_tokens=64,
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == WORDS
    server.set_fault(Fault("blocked", after_events=2))
    r = client.chat.completions.create(model="test-model", messages=messages, max_completion_tokens=64)
    assert r.choices[0].finish_reason == "content_filter"
    for fault, error, code in [(Fault("status", status=429), openai.RateLimitError, "rate_limit_exceeded"),
                               (Fault("account"), openai.RateLimitError, "insufficient_quota"),
                               (Fault("status", status=500), openai.InternalServerError, None),
                               (Fault("unauthorized"), openai.AuthenticationError, "invalid_api_key")]:
        server.set_fault(fault)
        with pytest.raises(error) as info:
            client.chat.completions.create(model="test-model", messages=messages, max_completion_tokens=64)
        assert info.value.code == code
    server.set_fault(None)
    with pytest.raises(openai.BadRequestError, match="maximum length 4"):
        client.chat.completions.create(model="test-model", messages=messages, stop=["a", "b", "c", "d", "e"])


@pytest.mark.parametrize("server", [("anthropic", False)], indirect=True)
def test_anthropic_sdk_against_the_emulator(server):
    client = anthropic_client(server)
    messages = [{"role": "user", "content": "Tell me about the fox."}]
    m = client.messages.create(model="test-model", max_tokens=64, system="Be brief.", messages=messages)
    assert m.content[0].text == REPLY and m.stop_reason == "end_turn" and m.usage.output_tokens == WORDS
    # The SDK's own auth: its API version and the key as a bearer token.
    sent = server.requests[-1].headers
    assert sent["authorization"] == f"Bearer {KEY}" and sent["anthropic-version"] == "2026-10-21"
    with client.messages.stream(model="test-model", max_tokens=64, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY and final.stop_reason == "end_turn" and final.usage.output_tokens == WORDS
    server.set_fault(Fault("blocked", after_events=2))
    assert client.messages.create(model="test-model", max_tokens=64, messages=messages).stop_reason == "refusal"
    for fault, error in [(Fault("status", status=429), anthropic.RateLimitError),
                         (Fault("status", status=529), anthropic.InternalServerError),
                         (Fault("account"), anthropic.BadRequestError),
                         (Fault("unauthorized"), anthropic.AuthenticationError)]:
        server.set_fault(fault)
        with pytest.raises(error):
            client.messages.create(model="test-model", max_tokens=64, messages=messages)
    server.set_fault(Fault("stream_error", after_events=2))
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client.messages.stream(model="test-model", max_tokens=64, messages=messages) as stream:
            "".join(stream.text_stream)
    server.set_fault(None)
    with pytest.raises(anthropic.BadRequestError, match="prefill"):
        client.messages.create(model="test-model", max_tokens=64,
                               messages=[*messages, {"role": "assistant", "content": "The quick"}])


@pytest.mark.parametrize("server", [("gemini", False)], indirect=True)
def test_gemini_sdk_against_the_emulator(server):
    client = gemini_client(server)
    config = genai_types.GenerateContentConfig(max_output_tokens=64, system_instruction="Be brief.")
    r = client.models.generate_content(model="gemini-2.0-flash", contents="Tell me about the fox.", config=config)
    assert r.text == REPLY and r.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert r.usage_metadata.candidates_token_count == WORDS
    text = "".join(c.text or "" for c in client.models.generate_content_stream(
        model="gemini-2.0-flash", contents="Tell me about the fox.", config=config))
    assert text == REPLY
    # A thinking model without a thinking config spends a small budget thinking: no answer.
    thinking = client.models.generate_content(model="gemini-2.5-flash", contents="Tell me about the fox.",
                                              config=genai_types.GenerateContentConfig(max_output_tokens=32))
    assert not thinking.text and thinking.usage_metadata.thoughts_token_count == 32
    server.set_fault(Fault("blocked", after_events=2))
    r = client.models.generate_content(model="gemini-2.0-flash", contents="hi", config=config)
    assert r.candidates[0].finish_reason == genai_types.FinishReason.SAFETY
    for fault, error, status in [(Fault("status", status=429), genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
                                 (Fault("status", status=503), genai_errors.ServerError, "UNAVAILABLE"),
                                 (Fault("account"), genai_errors.ClientError, "FAILED_PRECONDITION")]:
        server.set_fault(fault)
        with pytest.raises(error) as info:
            client.models.generate_content(model="gemini-2.0-flash", contents="hi", config=config)
        assert info.value.status == status


# -- 2. the adapters' requests against the SDKs' -----------------------------------------------------------

# Differences from the SDK's request that we choose, by provider and JSON path, each with
# its reason. None today: where the adapters differed (Anthropic's auth and version, the
# Gemini system instruction's role), they now send what the SDK sends.
ALLOWED: dict[str, dict[str, str]] = {
    "openai": {},
    "anthropic": {},
    "gemini": {},
}
# Headers that carry the protocol: the key, the content type, the API version.
HEADERS = {"openai": ("authorization", "content-type"),
           "anthropic": ("authorization", "x-api-key", "content-type", "anthropic-version"),
           "gemini": ("x-goog-api-key", "content-type")}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, value in enumerate(obj) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj}


def differences(kind: str, ours: RecordedRequest, sdk: RecordedRequest) -> list[str]:
    out = []
    if (ours.method, ours.path) != (sdk.method, sdk.path):
        out.append(f"request line: {ours.method} {ours.path} != {sdk.method} {sdk.path}")
    for h in HEADERS[kind]:
        if ours.headers.get(h, "").split(";")[0] != sdk.headers.get(h, "").split(";")[0]:
            out.append(f"header {h}: {ours.headers.get(h)!r} != {sdk.headers.get(h)!r}")
    a, b = flatten(ours.body or {}), flatten(sdk.body or {})
    for path in sorted(set(a) | set(b)):
        if path not in ALLOWED[kind] and a.get(path, "<absent>") != b.get(path, "<absent>"):
            out.append(f"{path}: {a.get(path, '<absent>')!r} != {b.get(path, '<absent>')!r}")
    return out


def adapter_request(srv: ProviderServer, kind: str, model: str, stream: bool) -> RecordedRequest:
    cls = {"openai": OpenAIBackend, "anthropic": AnthropicBackend, "gemini": GeminiBackend}[kind]
    backend = cls("x", base_url=srv.base_url, model=model, api_key=KEY, official=True)
    request = GenerationRequest(messages=(Message("system", "Be brief."), Message("user", "Tell me about the fox.")),
                                params=SamplingParams(max_tokens=64, temperature=0.2, stop=("END",)), stream=stream)

    async def go() -> None:
        try:
            [c async for c in backend.generate(request)]
        finally:
            await backend.close()

    asyncio.run(go())
    return srv.requests[-1]


def sdk_request(srv: ProviderServer, kind: str, model: str, stream: bool) -> RecordedRequest:
    if kind == "openai":
        extra: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        r = openai_client(srv).chat.completions.create(
            model=model, messages=[{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Tell me about the fox."}],
            max_completion_tokens=64, temperature=0.2, stop=["END"], **extra)
        if stream:
            list(r)
    elif kind == "anthropic":  # its Messages API takes no temperature
        r = anthropic_client(srv).messages.create(model=model, max_tokens=64, system="Be brief.", stop_sequences=["END"],
                                                  messages=[{"role": "user", "content": "Tell me about the fox."}],
                                                  **({"stream": True} if stream else {}))
        if stream:
            list(r)
    else:
        config = genai_types.GenerateContentConfig(max_output_tokens=64, temperature=0.2, stop_sequences=["END"],
                                                   system_instruction="Be brief.")
        client = gemini_client(srv)
        if stream:
            list(client.models.generate_content_stream(model=model, contents="Tell me about the fox.", config=config))
        else:
            client.models.generate_content(model=model, contents="Tell me about the fox.", config=config)
    return srv.requests[-1]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("server,model", [(("openai", True), "gpt-4.1"), (("anthropic", False), "claude-test"),
                                          (("gemini", False), "gemini-2.0-flash")],
                         indirect=["server"], ids=["openai", "anthropic", "gemini"])
def test_the_adapters_request_is_the_sdks(server, model, stream):
    kind = server.kind
    ours = adapter_request(server, kind, model, stream)
    sdk = sdk_request(server, kind, model, stream)
    assert differences(kind, ours, sdk) == [], json.dumps({"ours": ours.body, "sdk": sdk.body}, indent=1)
