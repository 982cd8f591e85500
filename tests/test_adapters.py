"""Remote provider adapters against the providers' real wire formats.

Responses are hand-written bytes in each provider's documented shape, served by
httpx.MockTransport; the timeout and connection tests use real loopback sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from edge.backends.anthropic import AnthropicBackend
from edge.backends.base import Chunk, GenerationRequest, Message, SamplingParams, Timeouts
from edge.backends.gemini import GeminiBackend
from edge.backends.openai import OpenAIBackend
from edge.backends.remote import CONTINUE_INSTRUCTION, RemoteBackend, SSEEvent, SSEParser, parse_retry_after
from edge.errors import BackendMisconfigured, BackendRejectedRequest, RetryableBackendError

KEY = "sk-SECRET-key-7f3a9c1e5b"


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def sse(*events: tuple[str | None, Any], crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        out.append((f"event: {name}{nl}" if name else "") + f"data: {text}{nl}{nl}")
    return "".join(out).encode()


# -- each provider's wire -------------------------------------------------------------

def _oa_delta(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}


OA_UNARY = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
                         "logprobs": None, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}
OA_EVENTS = [(None, {**_oa_delta(""), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                   "finish_reason": None}]}),
             (None, _oa_delta("Hel")), (None, _oa_delta("lo")), (None, _oa_delta(" wörld")),
             (None, _oa_delta(finish="stop")),
             (None, {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                     "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}),
             (None, "[DONE]")]

AN_UNARY = {"id": "msg_01X", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hello there."}], "stop_reason": "max_tokens",
            "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 3}}


def _an_delta(text: str) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}})


AN_EVENTS = [("message_start", {"type": "message_start", "message": {
                 "id": "msg_01X", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
                 "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
             ("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}),
             ("ping", {"type": "ping"}),
             _an_delta("Hel"), _an_delta("lo"), _an_delta(" wörld"),
             ("content_block_stop", {"type": "content_block_stop", "index": 0}),
             ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 3}}),
             ("message_stop", {"type": "message_stop"})]
AN_OVERLOADED = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

GE_UNARY = {"candidates": [{"content": {"parts": [{"text": "Hello "}, {"text": "there."}], "role": "model"},
                            "finishReason": "MAX_TOKENS", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15},
            "modelVersion": "gemini-2.0-flash", "responseId": "abc"}


def _ge_chunk(text: str, finish: str | None = None, out_tokens: int = 1) -> tuple[None, dict[str, Any]]:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return (None, {"candidates": [cand], "usageMetadata": {
        "promptTokenCount": 12, "candidatesTokenCount": out_tokens, "totalTokenCount": 12 + out_tokens},
        "modelVersion": "gemini-2.0-flash"})


GE_EVENTS = [_ge_chunk("Hel"), _ge_chunk("lo", out_tokens=2), _ge_chunk(" wörld", "STOP", out_tokens=3)]


@dataclass
class Provider:
    cls: type[RemoteBackend]
    unary: dict[str, Any]
    events: list[tuple[str | None, Any]]
    cut_at: int  # events before the terminal one: the stream is cut after these
    bad_request: dict[str, Any]
    reason: str  # what the 400 body says; must reach the client
    crlf: bool = False
    key_header: str = ""

    def stream(self, events: list[tuple[str | None, Any]] | None = None) -> bytes:
        return sse(*(self.events if events is None else events), crlf=self.crlf)


PROVIDERS = {
    "openai": Provider(
        OpenAIBackend, OA_UNARY, OA_EVENTS, cut_at=4, key_header="authorization",
        bad_request={"error": {"message": "Invalid value for 'temperature': must be <= 2.", "type":
                               "invalid_request_error", "param": "temperature", "code": "invalid_value"}},
        reason="Invalid value for 'temperature': must be <= 2."),
    "anthropic": Provider(
        AnthropicBackend, AN_UNARY, AN_EVENTS, cut_at=8, key_header="authorization",
        bad_request={"type": "error", "error": {"type": "invalid_request_error",
                                                "message": "messages: roles must alternate"}},
        reason="messages: roles must alternate"),
    "gemini": Provider(
        GeminiBackend, GE_UNARY, GE_EVENTS, cut_at=2, crlf=True, key_header="x-goog-api-key",
        bad_request={"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name \"tempo\".",
                               "status": "INVALID_ARGUMENT"}},
        reason="Invalid JSON payload received. Unknown name \"tempo\"."),
}
NAMES = list(PROVIDERS)


# -- harness --------------------------------------------------------------------------

class Pieces(httpx.AsyncByteStream):
    """A response body that arrives in tiny pieces, like a slow network."""

    def __init__(self, data: bytes, size: int = 1, gate: asyncio.Event | None = None, gate_at: int = -1) -> None:
        self.data, self.size, self.gate, self.gate_at = data, size, gate, gate_at
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.size):
            if self.gate is not None and i == self.gate_at:
                await self.gate.wait()
            yield self.data[i:i + self.size]
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Mock:
    respond: Callable[[httpx.Request], httpx.Response]
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.respond(request)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.seen[-1].content)


def reply(status: int = 200, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
          stream: httpx.AsyncByteStream | None = None) -> Mock:
    def respond(_: httpx.Request) -> httpx.Response:
        if stream is not None:
            return httpx.Response(status, headers={"content-type": "text/event-stream", **(headers or {})},
                                  stream=stream)
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx.Response(status, headers={"content-type": "application/json", **(headers or {})},
                              content=content)
    return Mock(respond)


def sse_reply(data: bytes, size: int = 4096) -> Mock:
    return reply(stream=Pieces(data, size))


def make(name: str, mock: Mock, **kw: Any) -> RemoteBackend:
    kw.setdefault("api_key", KEY)
    return PROVIDERS[name].cls(f"{name}-cloud", model=kw.pop("model", "test-model"),
                               transport=httpx.MockTransport(mock), **kw)


def req(stream: bool = True, **kw: Any) -> GenerationRequest:
    messages = kw.pop("messages", (Message("system", "Be brief."), Message("user", "Hi"),
                                   Message("assistant", "Hello!"), Message("user", "Greet the world")))
    params = kw.pop("params", SamplingParams(max_tokens=64))
    return GenerationRequest(messages=messages, params=params, stream=stream, **kw)


def collect(backend: RemoteBackend, request: GenerationRequest) -> list[Chunk]:
    async def go() -> list[Chunk]:
        try:
            return [c async for c in backend.generate(request)]
        finally:
            await backend.close()
    return asyncio.run(go())


def failure(backend: RemoteBackend, request: GenerationRequest, kind: type[Exception]) -> Exception:
    with pytest.raises(kind) as info:
        collect(backend, request)
    exc = info.value
    assert KEY not in str(exc) and KEY not in repr(exc), "the API key leaked into an error"
    assert backend.name in str(exc)
    return exc


def check_answer(chunks: list[Chunk], texts: list[str], finish: str) -> None:
    assert [c.text for c in chunks[:-1]] == texts
    assert all(c.finish_reason is None for c in chunks[:-1])
    last = chunks[-1]
    assert (last.text, last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("", finish, 12, 3)


# -- answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_unary_text_usage_and_finish(name: str) -> None:
    mock = reply(body=PROVIDERS[name].unary)
    check_answer(collect(make(name, mock), req(stream=False)), ["Hello there."], "length")
    assert mock.seen[0].method == "POST"


@pytest.mark.parametrize("name", NAMES)
def test_stream_yields_each_delta_in_order(name: str) -> None:
    mock = sse_reply(PROVIDERS[name].stream())
    check_answer(collect(make(name, mock), req()), ["Hel", "lo", " wörld"], "stop")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("name", NAMES)
def test_stream_events_split_across_arbitrary_byte_boundaries(name: str, size: int) -> None:
    mock = sse_reply(PROVIDERS[name].stream(), size=size)  # splits lines, CRLFs and the UTF-8 of "ö"
    check_answer(collect(make(name, mock), req()), ["Hel", "lo", " wörld"], "stop")


@pytest.mark.parametrize("name", NAMES)
def test_stream_delta_is_yielded_before_the_rest_arrives(name: str) -> None:
    p = PROVIDERS[name]
    data = p.stream()
    blank = b"\r\n\r\n" if p.crlf else b"\n\n"
    first_delta_end = data.index(blank, data.index(b"Hel")) + len(blank)  # the first delta's event is whole
    gate = asyncio.Event()

    async def go() -> None:
        mock = reply(stream=Pieces(data, size=1, gate=gate, gate_at=first_delta_end))
        backend = make(name, mock)
        it = backend.generate(req())
        try:
            first = await asyncio.wait_for(anext(it), 2)
            while not first.text:
                first = await asyncio.wait_for(anext(it), 2)
            assert first.text == "Hel"
            gate.set()
            rest = [c async for c in it]
            assert rest[-1].finish_reason == "stop"
        finally:
            await backend.close()
    asyncio.run(go())


@pytest.mark.parametrize("name", NAMES)
def test_closing_the_stream_early_closes_the_response(name: str) -> None:
    body = Pieces(PROVIDERS[name].stream(), size=5)

    async def go() -> None:
        backend = make(name, reply(stream=body))
        it = backend.generate(req())
        async for chunk in it:
            if chunk.text:
                break
        await it.aclose()
        await backend.close()
    asyncio.run(go())
    assert body.closed


@pytest.mark.parametrize("name", NAMES)
def test_stream_cut_before_terminal_event_is_retryable(name: str) -> None:
    p = PROVIDERS[name]
    exc = failure(make(name, sse_reply(p.stream(p.events[:p.cut_at]))), req(), RetryableBackendError)
    assert "terminal event" in str(exc)


@pytest.mark.parametrize("name", NAMES)
def test_stream_cut_mid_event_is_retryable(name: str) -> None:
    data = PROVIDERS[name].stream()
    cut = data[:data.index(" wörld".encode()) + 3]  # inside a JSON line, no newline after it
    failure(make(name, sse_reply(cut)), req(), RetryableBackendError)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_malformed_json_is_retryable(name: str, stream: bool) -> None:
    if stream:
        mock = sse_reply(sse((None, '{"candidates": [{"content": '), crlf=True)
                         if name != "anthropic" else sse(("message_start", '{"type": "message_start", "mess')))
    else:
        mock = reply(raw=b'{"choices": [{"index": 0, "message": {"content": "Hel')
    exc = failure(make(name, mock), req(stream=stream), RetryableBackendError)
    assert "malformed" in str(exc)


@pytest.mark.parametrize("name", NAMES)
def test_unexpected_json_shape_is_retryable(name: str) -> None:
    failure(make(name, reply(body={"unexpected": True})), req(stream=False), RetryableBackendError)


# -- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_400_is_rejected_with_the_providers_reason(name: str, stream: bool) -> None:
    p = PROVIDERS[name]
    exc = failure(make(name, reply(400, p.bad_request)), req(stream=stream), BackendRejectedRequest)
    assert p.reason in str(exc) and "400" in str(exc)
    assert exc.status == 400  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [401, 403, 404])
@pytest.mark.parametrize("name", NAMES)
def test_auth_and_not_found_are_misconfigured_and_never_leak_the_key(name: str, status: int) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error",
                      "code": status, "status": "UNAUTHENTICATED"}}
    if name == "anthropic":
        body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {KEY}"}}
    exc = failure(make(name, reply(status, body)), req(), BackendMisconfigured)
    assert exc.status == status and str(status) in str(exc)  # type: ignore[attr-defined]
    assert "***" in str(exc)  # the echoed key was scrubbed, the rest of the reason kept


@pytest.mark.parametrize("name", NAMES)
def test_429_carries_retry_after_seconds(name: str) -> None:
    mock = reply(429, {"error": {"message": "Rate limit reached", "code": 429}}, headers={"retry-after": "7"})
    exc = failure(make(name, mock), req(), RetryableBackendError)
    assert exc.retry_after == 7 and exc.status == 429  # type: ignore[attr-defined]


def test_retry_after_as_http_date() -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    exc = failure(make("openai", reply(429, {}, headers={"retry-after": when})), req(), RetryableBackendError)
    assert 25 <= exc.retry_after <= 31  # type: ignore[attr-defined, operator]


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7 and parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
@pytest.mark.parametrize("name", NAMES)
def test_server_errors_are_retryable(name: str, status: int) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    exc = failure(make(name, reply(status, body)), req(stream=status % 2 == 0), RetryableBackendError)
    assert exc.status == status and exc.retry_after is None  # type: ignore[attr-defined]


def test_non_json_error_body_still_classifies() -> None:
    mock = reply(502, raw=b"<html><body>502 Bad Gateway</body></html>")
    exc = failure(make("openai", mock), req(), RetryableBackendError)
    assert "502 Bad Gateway" in str(exc)


def test_anthropic_overloaded_error_event_mid_stream_is_retryable() -> None:
    events = AN_EVENTS[:4] + [AN_OVERLOADED]
    chunks: list[Chunk] = []

    async def go() -> None:
        backend = make("anthropic", sse_reply(sse(*events)))
        try:
            async for c in backend.generate(req()):
                chunks.append(c)
        finally:
            await backend.close()
    with pytest.raises(RetryableBackendError) as info:
        asyncio.run(go())
    assert "overloaded_error" in str(info.value)
    assert [c.text for c in chunks] == ["Hel"] and all(c.finish_reason is None for c in chunks)


def test_anthropic_invalid_request_error_event_is_rejected() -> None:
    event = ("error", {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt too long"}})
    exc = failure(make("anthropic", sse_reply(sse(AN_EVENTS[0], event))), req(), BackendRejectedRequest)
    assert "prompt too long" in str(exc)


def test_openai_error_chunk_mid_stream_is_retryable() -> None:
    err = (None, {"error": {"message": "The server had an error while processing your request.",
                            "type": "server_error"}})
    exc = failure(make("openai", sse_reply(sse(*OA_EVENTS[:2], err))), req(), RetryableBackendError)
    assert "server had an error" in str(exc)


def test_gemini_retry_delay_from_retry_info() -> None:
    body = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                      "status": "RESOURCE_EXHAUSTED", "details": [
                          {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                          {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}
    exc = failure(make("gemini", reply(429, body)), req(), RetryableBackendError)
    assert exc.retry_after == 7 and "RESOURCE_EXHAUSTED" in str(exc)  # type: ignore[attr-defined]


def test_gemini_invalid_key_400_is_misconfigured() -> None:
    body = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                      "status": "INVALID_ARGUMENT", "details": [
                          {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                           "domain": "googleapis.com"}]}}
    exc = failure(make("gemini", reply(400, body)), req(), BackendMisconfigured)
    assert exc.status == 400  # type: ignore[attr-defined]


def test_gemini_blocked_prompt_is_rejected() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    exc = failure(make("gemini", reply(body=body)), req(stream=False), BackendRejectedRequest)
    assert "SAFETY" in str(exc)


@pytest.mark.parametrize("reason,finish", [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                           ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop")])
def test_gemini_finish_reasons(reason: str, finish: str) -> None:
    body = {**GE_UNARY, "candidates": [{**GE_UNARY["candidates"][0], "finishReason": reason}]}
    assert collect(make("gemini", reply(body=body)), req(stream=False))[-1].finish_reason == finish


@pytest.mark.parametrize("reason,finish", [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                           ("model_context_window_exceeded", "length"), ("refusal", "content_filter")])
def test_anthropic_stop_reasons(reason: str, finish: str) -> None:
    assert collect(make("anthropic", reply(body={**AN_UNARY, "stop_reason": reason})),
                   req(stream=False))[-1].finish_reason == finish


def test_provider_without_usage_reports_zero() -> None:
    events = [(None, _oa_delta("Hi")), (None, _oa_delta(finish="stop")), (None, "[DONE]")]
    last = collect(make("openai", sse_reply(sse(*events))), req())[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("stop", 0, 0)


# -- what the provider receives ---------------------------------------------------------

PARAMS = SamplingParams(max_tokens=50, temperature=0.2, top_p=0.9, stop=("END", "\n\n"), seed=42)


def test_openai_request_wire() -> None:
    mock = sse_reply(PROVIDERS["openai"].stream())
    collect(make("openai", mock), req(params=PARAMS))
    sent = mock.seen[0]
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert mock.body == {
        "model": "test-model", "max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.9,
        "stop": ["END", "\n\n"], "seed": 42, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Greet the world"}]}


def test_openai_compatible_server_without_key() -> None:
    mock = reply(body=OA_UNARY)
    collect(make("openai", mock, api_key=None, base_url="http://10.0.0.5:8000/v1/"), req(stream=False))
    sent = mock.seen[0]
    assert str(sent.url) == "http://10.0.0.5:8000/v1/chat/completions"
    assert "authorization" not in sent.headers
    body = mock.body
    assert body["max_tokens"] == 64 and "stream" not in body and "stream_options" not in body
    assert "temperature" not in body and "seed" not in body and "stop" not in body


def test_anthropic_request_wire() -> None:
    mock = sse_reply(PROVIDERS["anthropic"].stream())
    messages = (Message("system", "Be brief."), Message("user", "Hi"), Message("system", "Use English."),
                Message("assistant", "Hello!"), Message("user", "Greet the world"))
    collect(make("anthropic", mock, headers={"anthropic-beta": "x"}), req(params=PARAMS, messages=messages))
    sent = mock.seen[0]
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    # What anthropic 2.14.0 sends: its API version, the key as a bearer token, and no
    # sampling parameters (the version's Messages API takes none).
    assert sent.headers["authorization"] == f"Bearer {KEY}" and sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.headers["content-type"] == "application/json" and sent.headers["anthropic-beta"] == "x"
    assert "x-api-key" not in sent.headers
    assert mock.body == {
        "model": "test-model", "max_tokens": 50, "stop_sequences": ["END", "\n\n"],
        "stream": True, "system": "Be brief.\n\nUse English.",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": "Greet the world"}]}


@pytest.mark.parametrize("temperature,top_p,sent", [(0.2, 0.9, {"temperature": 0.2}), (1.7, None, {"temperature": 1.0}),
                                                    (None, 0.9, {"top_p": 0.9})])
def test_anthropic_legacy_version_takes_one_sampling_parameter_within_its_range(temperature, top_p, sent) -> None:
    mock = sse_reply(PROVIDERS["anthropic"].stream())
    params = SamplingParams(max_tokens=50, temperature=temperature, top_p=top_p)
    collect(make("anthropic", mock, api_version="2023-06-01"), req(params=params))
    assert mock.seen[0].headers["x-api-key"] == KEY and "authorization" not in mock.seen[0].headers
    assert mock.seen[0].headers["anthropic-version"] == "2023-06-01"
    assert {k: mock.body[k] for k in ("temperature", "top_p") if k in mock.body} == sent


def test_gemini_request_wire() -> None:
    mock = sse_reply(PROVIDERS["gemini"].stream())
    collect(make("gemini", mock, model="gemini-2.0-flash"), req(params=PARAMS))
    sent = mock.seen[0]
    assert sent.url.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert sent.url.host == "generativelanguage.googleapis.com" and dict(sent.url.params) == {"alt": "sse"}
    assert sent.headers["x-goog-api-key"] == KEY and KEY not in str(sent.url)
    assert mock.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}, {"role": "model", "parts": [{"text": "Hello!"}]},
                     {"role": "user", "parts": [{"text": "Greet the world"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}], "role": "user"},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9,
                             "stopSequences": ["END", "\n\n"], "seed": 42}}


def test_gemini_unary_url() -> None:
    mock = reply(body=GE_UNARY)
    collect(make("gemini", mock, model="models/gemini-2.0-flash"), req(stream=False))
    assert str(mock.seen[0].url) == ("https://generativelanguage.googleapis.com"
                                     "/v1beta/models/gemini-2.0-flash:generateContent")


# -- continuing a partial answer ----------------------------------------------------------

def test_a_compatible_server_continues_a_final_assistant_message() -> None:
    mock = sse_reply(PROVIDERS["openai"].stream())
    chunks = collect(make("openai", mock, base_url="http://vllm.lan/v1"), req(assistant_prefix="Hello wo"))
    assert mock.body["messages"][-1] == {"role": "assistant", "content": "Hello wo"}
    assert "".join(c.text for c in chunks) == "Hello wörld"


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
def test_the_providers_own_apis_are_asked_to_continue_by_instruction(name: str) -> None:
    """OpenAI starts a new reply after a final assistant message, Anthropic models without
    prefill refuse one, Gemini answers a final model turn afresh: each is given the text so
    far as the assistant's turn and asked to continue it."""
    mock = sse_reply(PROVIDERS[name].stream())
    collect(make(name, mock, model="gemini-2.0-flash" if name == "gemini" else "test-model"),
            req(assistant_prefix="Hello wo"))
    turns = mock.body["contents"] if name == "gemini" else mock.body["messages"]
    text = [t["parts"][0]["text"] if name == "gemini" else t["content"] for t in turns[-2:]]
    roles = [t["role"] for t in turns[-2:]]
    assert roles == ["model" if name == "gemini" else "assistant", "user"]
    assert text == ["Hello wo", CONTINUE_INSTRUCTION]


@pytest.mark.parametrize("answer,client_sees", [
    (" Paris, on the Seine.", " Paris, on the Seine."),          # continued where it stopped
    ("is Paris, on the Seine.", " Paris, on the Seine."),        # repeated the last word
    ("France is Paris, on the Seine.", " Paris, on the Seine."),  # repeated the last words
    ("The capital of France is Paris, on the Seine.", " Paris, on the Seine."),  # restarted the answer
    ("island of Paris", "island of Paris"),  # "is" here starts a new word: not a repeat
    ("Goodbye.", "Goodbye."),                                     # something else: passed as it is
])
def test_a_continuation_by_instruction_is_trimmed_of_what_it_repeats(answer: str, client_sees: str) -> None:
    pieces = [answer[i:i + 3] for i in range(0, len(answer), 3)]  # split anywhere, as streams are
    events = [(None, _oa_delta(p)) for p in pieces] + [(None, _oa_delta(finish="stop")), (None, "[DONE]")]
    chunks = collect(make("openai", sse_reply(sse(*events))), req(assistant_prefix="The capital of France is"))
    assert "".join(c.text for c in chunks) == client_sees


def test_anthropic_prefill_when_configured_trims_trailing_whitespace() -> None:
    events = AN_EVENTS[:3] + [_an_delta(" "), _an_delta(" world")] + AN_EVENTS[6:]
    mock = sse_reply(sse(*events))
    chunks = collect(make("anthropic", mock, continuation="prefill"), req(assistant_prefix="Hello "))
    assert mock.body["messages"][-1] == {"role": "assistant", "content": "Hello"}  # the API rejects trailing space
    assert "".join(c.text for c in chunks) == "world"


# -- time limits, connections and probes ------------------------------------------------------

async def _silent_server() -> tuple[asyncio.base_events.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)  # accepts, reads the request, never answers
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


FAST = Timeouts(connect_s=1.0, first_byte_s=0.3, idle_s=0.3, total_s=5.0)


@pytest.mark.parametrize("stream", [True, False])
def test_first_byte_timeout_with_a_server_that_never_answers(stream: bool) -> None:
    async def go() -> None:
        server, port = await _silent_server()
        backend = OpenAIBackend("slow", base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key=KEY,
                                timeouts=FAST)
        try:
            with pytest.raises(RetryableBackendError) as info:
                [c async for c in backend.generate(req(stream=stream))]
            # The first-byte limit (0.3 s) fired, not the overall one (5 s), and says so.
            assert "first byte" in str(info.value) and "0.3" in str(info.value) and KEY not in str(info.value)
        finally:
            await backend.close()
            server.close()
    asyncio.run(go())


def test_idle_timeout_between_stream_events() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        event = sse((None, _oa_delta("Hel")))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     + f"{len(event):x}\r\n".encode() + event + b"\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async def go() -> list[str]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = OpenAIBackend("stall", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeouts=FAST)
        texts: list[str] = []
        try:
            with pytest.raises(RetryableBackendError) as info:
                async for c in backend.generate(req()):
                    texts.append(c.text)
            assert "idle" in str(info.value)
            return texts
        finally:
            await backend.close()
            server.close()
    assert asyncio.run(go()) == ["Hel"]


def test_connect_refused_is_retryable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    backend = AnthropicBackend("gone", base_url=f"http://127.0.0.1:{port}", model="m", api_key=KEY, timeouts=FAST)
    t0 = time.monotonic()
    exc = failure(backend, req(), RetryableBackendError)
    assert "connect" in str(exc) and time.monotonic() - t0 < 1.0


def test_passed_deadline_raises_without_sending() -> None:
    mock = reply(body=OA_UNARY)
    exc = failure(make("openai", mock), req(deadline=time.monotonic() - 0.01), RetryableBackendError)
    assert "deadline" in str(exc) and mock.seen == []


def test_caller_deadline_bounds_the_attempt_as_overall() -> None:
    async def go() -> float:
        server, port = await _silent_server()
        backend = GeminiBackend("g", base_url=f"http://127.0.0.1:{port}", model="m", api_key=KEY,
                                timeouts=Timeouts(connect_s=1, first_byte_s=5, idle_s=5, total_s=60))
        t0 = time.monotonic()
        try:
            with pytest.raises(RetryableBackendError) as info:
                [c async for c in backend.generate(req(deadline=time.monotonic() + 0.3))]
            assert "overall" in str(info.value)
            return time.monotonic() - t0
        finally:
            await backend.close()
            server.close()
    assert asyncio.run(go()) < 1.0


def test_connections_are_reused_across_requests() -> None:
    body = json.dumps(OA_UNARY).encode()
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         + f"content-length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()

    async def go() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = OpenAIBackend("local", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeouts=FAST)
        try:
            for _ in range(3):
                chunks = [c async for c in backend.generate(req(stream=False))]
                assert chunks[0].text == "Hello there."
        finally:
            await backend.close()
            server.close()
    asyncio.run(go())
    assert connections == 1


@pytest.mark.parametrize("name,path", [("openai", "/v1/models"), ("anthropic", "/v1/models"),
                                       ("gemini", "/v1beta/models")])
@pytest.mark.parametrize("status,outcome", [(200, None), (404, None), (429, None), (401, BackendMisconfigured),
                                            (403, BackendMisconfigured), (503, RetryableBackendError)])
def test_probe(name: str, path: str, status: int, outcome: type[Exception] | None) -> None:
    mock = reply(status, {"data": []})

    async def go() -> None:
        backend = make(name, mock)
        try:
            await backend.probe()
        finally:
            await backend.close()
    if outcome is None:
        asyncio.run(go())
    else:
        with pytest.raises(outcome) as info:
            asyncio.run(go())
        assert KEY not in str(info.value)
    assert mock.seen[0].method == "GET" and mock.seen[0].url.path == path
    assert mock.seen[0].headers[PROVIDERS[name].key_header].endswith(KEY)


def test_probe_connect_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    backend = OpenAIBackend("gone", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeouts=FAST)
    with pytest.raises(RetryableBackendError):
        asyncio.run(backend.probe())


@pytest.mark.parametrize("name", NAMES)
def test_identity_and_repr(name: str) -> None:
    backend = make(name, reply(body={}))
    assert (backend.name, backend.kind, backend.model) == (f"{name}-cloud", name, "test-model")
    assert backend.base_url == PROVIDERS[name].cls.default_base_url
    assert backend.describe().backend == name and backend.describe().name == f"{name}-cloud"
    assert KEY not in repr(backend) and KEY not in repr(vars(backend).get("timeouts"))


# -- the SSE parser ------------------------------------------------------------------------

WIRE = (b"\xef\xbb\xbf: a comment, ignored\r\n"
        b"event: message_start\r\ndata: {\"a\":\r\ndata:1}\r\n\r\n"
        b"data:no space\n\n"
        b"id: 7\nretry: 100\n\n"          # no data: not an event
        b"event: ping\rdata: caf\xc3\xa9\r\r"
        b"data: last")


def _parse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    out = [e for p in pieces for e in parser.feed(p)]
    last = parser.close()
    return out + ([last] if last else [])


EXPECTED = [SSEEvent("message_start", '{"a":\n1}'), SSEEvent("message", "no space"), SSEEvent("ping", "café")]


def test_sse_parser_whole_and_split_at_every_byte() -> None:
    complete = WIRE + b"\n"
    assert _parse([complete]) == EXPECTED + [SSEEvent("message", "last")]
    assert _parse([complete[i:i + 1] for i in range(len(complete))]) == EXPECTED + [SSEEvent("message", "last")]
    for cut in range(1, len(complete)):
        assert _parse([complete[:cut], complete[cut:]]) == EXPECTED + [SSEEvent("message", "last")]


def test_sse_parser_drops_a_line_cut_at_end_of_stream() -> None:
    assert _parse([WIRE]) == EXPECTED
