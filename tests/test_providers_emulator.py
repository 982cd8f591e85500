"""edge.testing.providers: real loopback servers, talked to with plain httpx, in each provider's wire format."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from edge.testing.providers import Fault, ProviderServer

KINDS = ("openai", "anthropic", "gemini")
REPLY = "Hello from the loopback provider."  # 5 words
PROMPT_WORDS = 5  # "four five" (system) + "one two three" (user)
FINISH = {"openai": ("stop", "length"), "anthropic": ("end_turn", "max_tokens"), "gemini": ("STOP", "MAX_TOKENS")}
AUTH_STATUS = {"openai": 401, "anthropic": 401, "gemini": 403}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make() -> Iterator:
    servers: list[ProviderServer] = []

    def factory(kind: str, **kw) -> ProviderServer:
        servers.append(ProviderServer(kind, **kw).start())
        return servers[-1]

    yield factory
    for srv in servers:
        srv.stop()


def build(srv: ProviderServer, *, stream: bool = False, key: str | None = None, max_tokens: int | None = None,
          stop: str | None = None) -> tuple[str, dict, dict]:
    """URL, headers and JSON body of a chat request in srv's own format."""
    if srv.kind == "openai":
        body: dict = {"model": "gpt-x", "messages": [
            {"role": "system", "content": "four five"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]}]}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        if max_tokens is not None:
            body["max_completion_tokens"] = max_tokens
        if stop:
            body["stop"] = [stop]
        return srv.base_url + "/chat/completions", ({"Authorization": f"Bearer {key}"} if key else {}), body
    if srv.kind == "anthropic":
        body = {"model": "claude-x", "max_tokens": 1024 if max_tokens is None else max_tokens, "system": "four five",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}]}
        if stream:
            body["stream"] = True
        if stop:
            body["stop_sequences"] = [stop]
        headers = {"anthropic-version": "2023-06-01"} | ({"x-api-key": key} if key else {})
        return srv.base_url + "/v1/messages", headers, body
    body = {"systemInstruction": {"parts": [{"text": "four five"}]},
            "contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}
    config = {k: v for k, v in (("maxOutputTokens", max_tokens), ("stopSequences", [stop] if stop else None)) if v}
    if config:
        body["generationConfig"] = config
    op = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{srv.base_url}/v1beta/models/gemini-x:{op}", ({"x-goog-api-key": key} if key else {}), body


def post(srv: ProviderServer, timeout: float = 5.0, **kw) -> httpx.Response:
    url, headers, body = build(srv, **kw)
    return httpx.post(url, headers=headers, json=body, timeout=timeout)


def parse_sse(lines: list[str]) -> list[tuple[str | None, str]]:
    events, name, data = [], None, []
    for line in lines + [""]:
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


def stream(srv: ProviderServer, **kw) -> tuple[httpx.Response, list[tuple[str | None, str]], Exception | None]:
    """Status, parsed events, and the transport error that ended the body early (if any)."""
    url, headers, body = build(srv, stream=True, **kw)
    lines: list[str] = []
    error = None
    with httpx.Client(timeout=5.0) as client, client.stream("POST", url, headers=headers, json=body) as resp:
        try:
            lines.extend(resp.iter_lines())
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            error = exc
    return resp, parse_sse(lines), error


def stream_text(kind: str, events: list) -> list[str]:
    out = []
    for name, data in events:
        if data == "[DONE]":
            continue
        d = json.loads(data)
        if kind == "openai":
            out += [c["delta"]["content"] for c in d["choices"] if c["delta"].get("content")]
        elif kind == "anthropic" and name == "content_block_delta":
            out.append(d["delta"]["text"])
        elif kind == "gemini":
            out += [p["text"] for c in d["candidates"] for p in c["content"]["parts"] if p["text"]]
    return out


def terminal_seen(kind: str, events: list) -> bool:
    if kind == "openai":
        return any(data == "[DONE]" for _, data in events)
    if kind == "anthropic":
        return any(name in ("message_delta", "message_stop") for name, _ in events)
    return any("finishReason" in json.loads(data)["candidates"][0] for _, data in events)


def unary(kind: str, j: dict) -> tuple[str, str, int, int]:
    """(text, finish reason, prompt tokens, completion tokens) of a unary answer."""
    if kind == "openai":
        c = j["choices"][0]
        return c["message"]["content"], c["finish_reason"], j["usage"]["prompt_tokens"], j["usage"]["completion_tokens"]
    if kind == "anthropic":
        return (j["content"][0]["text"], j["stop_reason"], j["usage"]["input_tokens"], j["usage"]["output_tokens"])
    c, u = j["candidates"][0], j["usageMetadata"]
    return c["content"]["parts"][0]["text"], c["finishReason"], u["promptTokenCount"], u["candidatesTokenCount"]


def assert_error(kind: str, resp: httpx.Response, status: int, etype: str) -> None:
    assert resp.status_code == status, resp.text
    j = resp.json()
    if kind == "openai":
        assert set(j["error"]) == {"message", "type", "param", "code"} and j["error"]["type"] == etype
    elif kind == "anthropic":
        assert j["type"] == "error" and j["error"]["type"] == etype and j["error"]["message"]
    else:
        assert j["error"]["code"] == status and j["error"]["status"] == etype and j["error"]["message"]


# ------------------------------------------------------------------------------------------- healthy shapes

@pytest.mark.parametrize("kind", KINDS)
def test_unary_shape_and_usage(make, kind: str) -> None:
    srv = make(kind)
    resp = post(srv)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    j = resp.json()
    assert unary(kind, j) == (REPLY, FINISH[kind][0], PROMPT_WORDS, 5)
    if kind == "openai":
        assert j["object"] == "chat.completion" and j["model"] == "gpt-x" and j["id"] and j["created"] > 0
        assert j["choices"][0]["message"]["role"] == "assistant" and j["usage"]["total_tokens"] == 10
    elif kind == "anthropic":
        assert (j["type"], j["role"], j["model"], j["stop_sequence"]) == ("message", "assistant", "claude-x", None)
        assert j["content"][0]["type"] == "text"
    else:
        assert j["candidates"][0]["content"]["role"] == "model" and j["candidates"][0]["index"] == 0
        assert j["modelVersion"] == "gemini-x" and j["usageMetadata"]["totalTokenCount"] == 10


@pytest.mark.parametrize("kind", KINDS)
def test_stream_shape_and_usage(make, kind: str) -> None:
    srv = make(kind)
    resp, events, error = stream(srv)
    assert error is None and resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert stream_text(kind, events) == ["Hello", " from", " the", " loopback", " provider."]
    if kind == "openai":
        chunks = [json.loads(d) for _, d in events[:-1]]
        assert events[-1][1] == "[DONE]" and all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["choices"][0]["delta"] == {}
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
            "prompt_tokens": PROMPT_WORDS, "completion_tokens": 5, "total_tokens": PROMPT_WORDS + 5}
        assert all(c["usage"] is None for c in chunks[:-1])
    elif kind == "anthropic":
        names = [n for n, _ in events]
        assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 5 + [
            "content_block_stop", "message_delta", "message_stop"]
        assert all(json.loads(d)["type"] == n for n, d in events)
        assert json.loads(events[0][1])["message"]["usage"]["input_tokens"] == PROMPT_WORDS
        delta = json.loads(events[-2][1])
        assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
        assert delta["usage"]["output_tokens"] == 5
    else:
        chunks = [json.loads(d) for _, d in events]
        assert len(chunks) == 5 and all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
        assert chunks[-1]["usageMetadata"] == {"promptTokenCount": PROMPT_WORDS, "candidatesTokenCount": 5,
                                               "totalTokenCount": PROMPT_WORDS + 5}
        url, _, body = build(srv, stream=True)
        raw = httpx.post(url, json=body).content  # the framing: CRLF-separated data events, no [DONE]
        assert raw.startswith(b"data: {") and raw.endswith(b"}\r\n\r\n") and b"[DONE]" not in raw


@pytest.mark.parametrize("kind", KINDS)
def test_max_tokens_truncates_with_length_reason(make, kind: str) -> None:
    srv = make(kind)
    text, finish, _, completion = unary(kind, post(srv, max_tokens=2).json())
    assert (text, finish, completion) == ("Hello from", FINISH[kind][1], 2)
    _, events, _ = stream(srv, max_tokens=2)
    assert stream_text(kind, events) == ["Hello", " from"]
    blob = " ".join(d for _, d in events)
    assert json.dumps(FINISH[kind][1]) in blob


@pytest.mark.parametrize("kind", KINDS)
def test_stop_sequence_cuts_the_reply(make, kind: str) -> None:
    srv = make(kind)
    j = post(srv, stop="loopback").json()
    text, finish, _, completion = unary(kind, j)
    assert text == "Hello from the" and completion == 3
    assert finish == {"openai": "stop", "anthropic": "stop_sequence", "gemini": "STOP"}[kind]
    if kind == "anthropic":
        assert j["stop_sequence"] == "loopback"


@pytest.mark.parametrize("kind", KINDS)
def test_models_listing(make, kind: str) -> None:
    srv = make(kind, model="m-1")
    path = {"openai": "/models", "anthropic": "/v1/models", "gemini": "/v1beta/models"}[kind]
    headers = {"anthropic-version": "2023-06-01"} if kind == "anthropic" else {}
    j = httpx.get(srv.base_url + path, headers=headers).json()
    ids = [m["name"] for m in j["models"]] if kind == "gemini" else [m["id"] for m in j["data"]]
    assert ids == (["models/m-1"] if kind == "gemini" else ["m-1"])
    assert httpx.get(srv.base_url + path + "/nope", headers=headers).status_code == 404


def test_reply_callable_and_recorded_requests(make) -> None:
    srv = make("anthropic", reply=lambda body: f"echo {body['messages'][0]['content'][0]['text']}")
    t0 = time.monotonic()
    assert unary("anthropic", post(srv, key="abc").json())[0] == "echo one two three"
    srv.set_fault(Fault("status", status=500))
    assert post(srv).status_code == 500
    first, second = srv.requests
    assert (first.method, first.path, first.headers["x-api-key"]) == ("POST", "/v1/messages", "abc")
    assert first.body["model"] == "claude-x" and t0 <= first.time <= second.time  # recorded before the fault too
    assert "x-api-key" not in second.headers


# ---------------------------------------------------------------------------------------------------- auth

@pytest.mark.parametrize("kind", KINDS)
def test_api_key_checked(make, kind: str) -> None:
    srv = make(kind, api_key="sekret")
    etype = {"openai": "invalid_request_error", "anthropic": "authentication_error", "gemini": "PERMISSION_DENIED"}
    assert_error(kind, post(srv), AUTH_STATUS[kind], etype[kind])
    assert_error(kind, post(srv, key="wrong"), AUTH_STATUS[kind], etype[kind])
    assert post(srv, key="sekret").status_code == 200
    if kind == "anthropic":
        wrong = post(srv, key="wrong").json()
        assert wrong["error"]["message"] == "invalid x-api-key"
        url, _, body = build(srv)
        assert_error(kind, httpx.post(url, headers={"x-api-key": "sekret"}, json=body), 400, "invalid_request_error")
    if kind == "gemini":
        url, _, body = build(srv)
        assert httpx.post(url + "?key=sekret", json=body).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_fault_unauthorized(make, kind: str) -> None:
    srv = make(kind)
    srv.set_fault(Fault("unauthorized"))
    etype = {"openai": "invalid_request_error", "anthropic": "authentication_error", "gemini": "PERMISSION_DENIED"}
    assert_error(kind, post(srv), AUTH_STATUS[kind], etype[kind])


# -------------------------------------------------------------------------------------------------- faults

def test_refuse_and_stop_start_keep_the_port(make) -> None:
    srv = make("openai")
    port = srv.port
    srv.set_fault(Fault("refuse"))
    with pytest.raises(httpx.ConnectError):
        post(srv)
    assert srv.requests == []
    srv.set_fault(None)
    assert post(srv).status_code == 200 and srv.port == port
    srv.stop()
    with pytest.raises(httpx.ConnectError):
        post(srv)
    srv.start()
    assert srv.port == port and post(srv).status_code == 200
    assert len(srv.requests) == 2


def test_hang_times_out_and_is_recorded(make) -> None:
    srv = make("gemini")
    srv.set_fault(Fault("hang"))
    with pytest.raises(httpx.ReadTimeout):
        post(srv, timeout=0.5)
    assert len(srv.requests) == 1 and srv.requests[0].body["contents"]


def test_stop_returns_quickly_with_a_hanging_client(make) -> None:
    srv = make("anthropic")
    url, headers, body = build(srv)
    pooled = httpx.Client(timeout=5)  # leaves an idle keep-alive connection (and its handler thread) open
    assert pooled.post(url, headers=headers, json=body).status_code == 200
    srv.set_fault(Fault("hang"))
    outcome: list[BaseException] = []

    def client() -> None:
        try:
            post(srv, timeout=30)
        except Exception as exc:  # noqa: BLE001 - what the client saw is the assertion
            outcome.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not srv.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.requests
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.5  # well inside the 2 s join budget: nothing waited for it
    thread.join(5)
    assert not thread.is_alive() and isinstance(outcome[0], httpx.TransportError)
    assert not [t for t in threading.enumerate() if t.name.startswith(f"provider-anthropic-{srv.port}")]
    with pytest.raises(httpx.ConnectError):  # the pooled connection is gone, and a new one is refused
        pooled.post(url, headers=headers, json=body)
    pooled.close()


def test_slow_first_byte(make) -> None:
    srv = make("openai")
    srv.set_fault(Fault("slow_first_byte", delay_s=0.4))
    t0 = time.monotonic()
    resp = post(srv)
    assert time.monotonic() - t0 >= 0.4 and resp.status_code == 200
    assert unary("openai", resp.json())[0] == REPLY


@pytest.mark.parametrize(("kind", "status", "etype"), [
    ("openai", 429, "requests"), ("anthropic", 429, "rate_limit_error"), ("gemini", 429, "RESOURCE_EXHAUSTED"),
    ("openai", 500, "server_error"), ("anthropic", 529, "overloaded_error"), ("gemini", 500, "INTERNAL"),
    ("gemini", 503, "UNAVAILABLE"), ("gemini", 400, "INVALID_ARGUMENT"), ("anthropic", 500, "api_error"),
])
def test_status_fault(make, kind: str, status: int, etype: str) -> None:
    srv = make(kind)
    srv.set_fault(Fault("status", status=status, retry_after=2 if status == 429 else None))
    resp = post(srv)
    assert_error(kind, resp, status, etype)
    assert resp.headers.get("retry-after") == ("2" if status == 429 else None)
    if kind == "openai" and status == 429:
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(srv.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_cut_stream(make, kind: str) -> None:
    srv = make(kind)
    srv.set_fault(Fault("cut_stream", after_events=2))
    resp, events, error = stream(srv)
    assert resp.status_code == 200 and isinstance(error, httpx.RemoteProtocolError)
    assert stream_text(kind, events) == ["Hello", " from"] and not terminal_seen(kind, events)
    with pytest.raises(httpx.RemoteProtocolError):
        post(srv)
    srv.set_fault(Fault("cut_stream", after_events=10))  # more than the reply has: still no terminal event
    _, events, error = stream(srv)
    assert isinstance(error, httpx.RemoteProtocolError) and not terminal_seen(kind, events)
    assert len(stream_text(kind, events)) == (4 if kind == "gemini" else 5)  # gemini's last word is terminal


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_json(make, kind: str) -> None:
    srv = make(kind)
    srv.set_fault(Fault("malformed_json"))
    resp = post(srv)
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        resp.json()
    resp, events, error = stream(srv)
    assert resp.status_code == 200 and error is None and events
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[0][1])


def test_stream_error(make) -> None:
    srv = make("anthropic")
    srv.set_fault(Fault("stream_error", after_events=3))
    resp, events, error = stream(srv)
    assert resp.status_code == 200 and error is None
    assert stream_text("anthropic", events) == ["Hello", " from", " the"]
    name, data = events[-1]
    assert name == "error" and json.loads(data) == {"type": "error", "error": {"type": "overloaded_error",
                                                                                "message": "Overloaded"}}
    assert not terminal_seen("anthropic", events)
    assert_error("anthropic", post(srv), 529, "overloaded_error")
    for kind, etype in (("openai", "server_error"), ("gemini", "INTERNAL")):
        other = make(kind)
        other.set_fault(Fault("stream_error"))
        assert_error(kind, post(other), 500, etype)
        assert stream(other)[0].status_code == 500


@pytest.mark.parametrize("kind", KINDS)
def test_flap_alternates(make, kind: str) -> None:
    srv = make(kind)
    srv.set_fault(Fault("flap"))
    responses = [post(srv) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 503, 200, 503]
    etype = {"openai": "service_unavailable_error", "anthropic": "api_error", "gemini": "UNAVAILABLE"}[kind]
    assert_error(kind, responses[3], 503, etype)


def test_times_then_healthy(make) -> None:
    srv = make("gemini")
    srv.set_fault(Fault("status", status=503, times=2))
    assert [post(srv).status_code for _ in range(4)] == [503, 503, 200, 200]
    srv.set_fault(Fault("flap", times=3))
    assert [post(srv).status_code for _ in range(5)] == [200, 503, 200, 200, 200]


def test_token_delay_paces_the_stream(make) -> None:
    srv = make("openai", token_delay_s=0.06)
    t0 = time.monotonic()
    _, events, _ = stream(srv)
    assert time.monotonic() - t0 >= 0.25 and len(stream_text("openai", events)) == 5


def test_cli_serves_until_interrupted() -> None:
    srv = ProviderServer("openai")  # only to pick a free port
    proc = subprocess.Popen([sys.executable, "-m", "edge.testing.providers", "--kind", "openai", "--port",
                             str(srv.port), "--reply", "cli says hi"], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.base_url in proc.stdout.readline()
        assert unary("openai", post(srv).json())[0] == "cli says hi"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
