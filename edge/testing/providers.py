"""Loopback HTTP servers that speak the OpenAI, Anthropic and Gemini wire formats, with fault injection.

A test or benchmark tool (standard library only), in the spirit of httpx's MockTransport but over real TCP,
so that an HTTP client, its connection pool, timeouts and retries are exercised as against the real APIs:

    with ProviderServer("anthropic", api_key="k") as srv:
        ...  # point a client at srv.base_url
        srv.set_fault(Fault("status", status=429, retry_after=1))

Endpoints per kind (unknown paths get the provider's 404 error body):

* openai: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``GET /v1/models[/ID]`` (also without
  ``/v1``). Key: ``Authorization: Bearer KEY``. Streams (``"stream": true``) are ``data: CHUNK\\n\\n`` events: a
  chunk with ``delta.role``, one chunk per word, a chunk with ``finish_reason``, the usage chunk (empty
  ``choices``) when ``stream_options.include_usage`` is set (other chunks then carry ``"usage": null``), and
  ``data: [DONE]``.
* anthropic: ``POST /v1/messages``, ``GET /v1/models[/ID]``. Key: ``x-api-key``; ``anthropic-version`` is
  required on every request (400 ``invalid_request_error`` without it), and so are ``model``, ``max_tokens`` and
  ``messages``. Streams are ``event: NAME\\ndata: JSON\\n\\n``: message_start, content_block_start, ping, one
  content_block_delta per word, content_block_stop, message_delta, message_stop.
* gemini: ``POST /v1beta/models/MODEL:generateContent``, ``POST /v1beta/models/MODEL:streamGenerateContent``
  (``?alt=sse``: ``data: JSON\\r\\n\\r\\n`` per word, the last one carrying ``finishReason`` and the full
  ``usageMetadata``, then end of body; without ``alt=sse``: one JSON array of the same chunks), ``GET
  /v1beta/models[/MODEL]`` (``/v1`` and ``/v1alpha`` work too). Key: ``x-goog-api-key`` header or ``?key=``.
  A missing or wrong key gets 403 ``PERMISSION_DENIED`` (the real API answers 400 for a malformed key).

The key is checked only when ``api_key`` is set. The reply is ``reply`` (a str, or ``callable(body) -> str``),
split into "words" (runs of non-space with their leading whitespace, so that the pieces join back to the
text); each word is one stream event and one completion token. Prompt tokens are the number of
whitespace-separated words in all input text (messages, system prompt, Gemini contents and systemInstruction),
a deterministic stand-in for a tokenizer. Stop sequences cut the reply before the first match (finish reason
stop / stop_sequence / STOP); ``max_tokens`` (openai ``max_completion_tokens`` or ``max_tokens``, anthropic
``max_tokens``, gemini ``generationConfig.maxOutputTokens``) truncates to that many words (finish reason
length / max_tokens / MAX_TOKENS). Responses echo the requested model (gemini: the one in the path); the
``model`` argument is what the model listings show. ``token_delay_s`` is slept before each event carrying a word
(a unary reply waits ``token_delay_s`` times its word count before its first byte).

Streams use ``Transfer-Encoding: chunked`` and are flushed per event, as the real servers do, so a cut stream
is visible to the client as an incomplete body (httpx: ``RemoteProtocolError``), not as a clean end.

Faults (``set_fault``). Every request that reaches the server is first appended to ``requests``, then the fault
decides the answer. ``times=N`` applies the fault to the next N requests (counted from ``set_fault``), then the
server is healthy again.

* ``refuse``: the listening socket is closed, so connections are refused (nothing is recorded; ``times`` is
  ignored). ``set_fault(None)`` listens again on the same port.
* ``hang``: the request is read and recorded and never answered; the connection is held until the server stops
  (or the client goes away).
* ``slow_first_byte``: waits ``delay_s`` before the status line, then answers normally; stopping the server cuts
  the wait short and closes the connection.
* ``status``: ``status`` with the provider's error body for that status (openai ``{"error": {message, type,
  param, code}}``; anthropic ``{"type": "error", "error": {type, message}, "request_id"}`` with 429
  rate_limit_error, 529 overloaded_error and so on; gemini ``{"error": {code, message, status}}`` with 429
  RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE...), and ``Retry-After`` when ``retry_after`` is set.
* ``cut_stream``: a stream sends its opening events and ``after_events`` word events, then the connection is
  closed without the terminal events (openai: no finish chunk nor ``[DONE]``; anthropic: no
  content_block_stop/message_delta/message_stop; gemini: no chunk with ``finishReason``) and without the
  chunked terminator. A unary answer sends its headers (with the full Content-Length) and half of the body.
* ``malformed_json``: 200 with a body that is not JSON; a stream gets one ``data: {not json`` event in the
  provider's framing, then a clean end.
* ``stream_error``: anthropic streams send ``after_events`` word events, then ``event: error`` with the
  ``overloaded_error`` body, then a clean end; an anthropic unary request gets 529 ``overloaded_error`` (what
  the docs say the stream error stands for). For openai and gemini it is the same as ``status`` 500.
* ``flap``: requests since the fault was set alternate: even-numbered (0, 2, ...) are healthy, odd-numbered ones
  get 503 with the provider's body.
* ``unauthorized``: 401 (openai, anthropic) or 403 (gemini) with the provider's invalid-key body.
* ``account``: the provider's account or region failure: openai 429 ``insufficient_quota``, anthropic 400
  "credit balance is too low", gemini 400 ``FAILED_PRECONDITION`` "User location is not supported".
* ``blocked``: the answer stops after ``after_events`` words with the provider's block reason (openai
  ``content_filter``, anthropic ``refusal``, gemini ``SAFETY``).
* ``no_done``: an openai stream ends after its finish and usage chunks without ``data: [DONE]``.

What the services refuse (400 with their words; see _wire.refusal): anthropic at the current API version
(``2026-10-21``, what anthropic 2.14.0 sends) takes no temperature, top_p or top_k; at older versions a
temperature above 1 or together with top_p; an empty text block; and a final assistant turn unless the server
was made with ``prefill=True``. OpenAI (``official=True``) takes at most 4 stop sequences; Gemini at most 5, and
no turn without text. A final assistant (model) turn is continued only by a server that prefills (openai
without ``official``, as vLLM, llama.cpp and Ollama do); OpenAI itself and Gemini answer it afresh. Anthropic
accepts its key as ``x-api-key`` or ``Authorization: Bearer``. Gemini thinking models (``gemini-2.5*``,
``gemini-3*``) think ``thinkingConfig.thinkingBudget`` tokens (at most 16 here), 64 without one, spent from
``maxOutputTokens`` and reported as ``thoughtsTokenCount``.

Also a small CLI: ``python -m edge.testing.providers --kind openai --port 8081 [--reply TEXT]``.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.testing._wire import (
    ACCOUNT_ERRORS,
    _Event,
    _OVERLOADED,
    _dumps,
    _error_body,
    _gemini_chunks,
    completion_plan,
    _retry_after,
    _stream_events,
    _unary_body,
    refusal,
)

__all__ = ["KINDS", "FAULT_KINDS", "Fault", "ProviderServer", "RecordedRequest", "continuing", "main"]

KINDS = ("openai", "anthropic", "gemini")
FAULT_KINDS = ("none", "refuse", "hang", "slow_first_byte", "status", "cut_stream", "malformed_json",
               "stream_error", "flap", "unauthorized", "account", "blocked", "no_done")


@dataclass
class Fault:
    """What a ProviderServer does wrong; see the module docstring for each kind."""

    kind: str = "none"
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 0.0
    after_events: int = 2
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    def for_request(self, seen: int) -> Fault | None:
        """What request number `seen` (0-based, counted from set_fault) gets: `times` limits
        the fault; `flap` answers the odd-numbered ones 503."""
        if self.times is not None and seen >= self.times:
            return None
        if self.kind == "flap":
            return None if seen % 2 == 0 else Fault("status", status=503, retry_after=self.retry_after)
        return self


@dataclass
class RecordedRequest:
    """One request as received: ``path`` includes the query string; ``headers`` keys are lower-case; ``body`` is
    the JSON object sent, or None (no body, or not a JSON object); ``time`` is ``time.monotonic()``."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    time: float




# ----------------------------------------------------------------------------------------------- the server

class _Listener(ThreadingHTTPServer):
    """One bound listening socket and its threads; ProviderServer makes a new one on every (re)start."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: ProviderServer) -> None:
        self.owner = owner
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.workers: set[threading.Thread] = set()
        super().__init__((owner.host, owner.port), _Handler)
        self.serve_thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                             name=f"provider-{owner.kind}-{owner.port}", daemon=True)
        self.serve_thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(target=self._work, args=(request, client_address), daemon=True,
                                  name=f"provider-{self.owner.kind}-{self.owner.port}-conn")
        with self.lock:
            self.conns.add(request)
            self.workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self.lock:
                self.conns.discard(request)
                self.workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.stop_event.is_set() or isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        self.stop_event.set()
        self.shutdown()
        self.server_close()
        with self.lock:
            conns, workers = list(self.conns), list(self.workers)
        for conn in conns:  # unblocks handlers reading a keep-alive connection or writing to a stalled client
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.serve_thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "loopback-provider/1"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Listener

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # -- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        owner = self.server.owner
        raw = self._read_body()
        body: dict | None = None
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        bad_json = bool(raw.strip()) and body is None
        owner._record(RecordedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body, time.monotonic()))
        fault = owner._next_fault()
        try:
            self._respond(method, body, bad_json, fault)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except OSError:
            if not self.server.stop_event.is_set():
                raise
            self.close_connection = True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _idle(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: forever); False as soon as the server stops or the client goes away."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return True
            if self.server.stop_event.wait(0.05 if left is None else min(0.05, left)) or self._client_gone():
                return False

    def _abort(self) -> None:
        """Close the connection now, mid-response if need be."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _head(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        kind = self.server.owner.kind
        if kind == "openai":
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        elif kind == "anthropic":
            self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        for name, value in headers.items():
            self.send_header(name, value)

    def _json(self, status: int, obj: Any, fault: Fault | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        if status == 200 and fault is not None and fault.kind == "malformed_json":
            data = b'{"id": "malformed", "choices": [{"message": {"content": "unterminated'
        content_type = "application/json; charset=UTF-8" if self.server.owner.kind == "gemini" else "application/json"
        self._head(status, content_type, {"Content-Length": str(len(data)), **(headers or {})})
        self.end_headers()
        if status == 200 and fault is not None and fault.kind == "cut_stream":
            self.wfile.write(data[: len(data) // 2])
            self._abort()
            return
        self.wfile.write(data)

    def _error(self, status: int, message: str | None = None, *, retry_after: float | None = None,
               **extra: Any) -> None:
        headers = {"Retry-After": _retry_after(retry_after)} if retry_after is not None else {}
        self._json(status, _error_body(self.server.owner.kind, status, message, **extra), headers=headers)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, events: list[_Event], fault: Fault | None, error_frame: bytes = b"") -> None:
        owner, kind = self.server.owner, self.server.owner.kind
        content_type = "text/event-stream" if kind == "gemini" else "text/event-stream; charset=utf-8"
        self._head(200, content_type, {"Cache-Control": "no-cache", "Transfer-Encoding": "chunked"})
        self.end_headers()
        self.wfile.flush()
        fk = fault.kind if fault is not None else "none"
        if fk == "malformed_json":
            framing = {"openai": b"data: {not json\n\n", "anthropic": b"event: message_start\ndata: {not json\n\n",
                       "gemini": b"data: {not json\r\n\r\n"}
            self._chunk(framing[kind])
            self.wfile.write(b"0\r\n\r\n")
            return
        interrupt = fk in ("cut_stream", "stream_error")
        sent = 0
        for terminal, words, frame in events:
            if interrupt and (terminal or (words and sent >= fault.after_events)):  # type: ignore[union-attr]
                break
            if words and owner.token_delay_s > 0 and self.server.stop_event.wait(owner.token_delay_s):
                return self._abort()
            self._chunk(frame)
            sent += words
        else:
            self.wfile.write(b"0\r\n\r\n")
            return
        if fk == "cut_stream":
            return self._abort()
        self._chunk(error_frame)
        self.wfile.write(b"0\r\n\r\n")

    # -- the provider

    def _route(self, method: str) -> tuple[str, str | None]:
        """("chat" | "stream" | "models" | "model" | "", model from the path)."""
        kind, url = self.server.owner.kind, urlsplit(self.path)
        path = url.path.rstrip("/")
        if kind == "gemini":
            m = re.fullmatch(r"/v1(?:beta|alpha)?/models(?:/([^/:]+)(?::(\w+))?)?", path)
            if not m:
                return "", None
            model, op = m.groups()
            if method == "POST" and op in ("generateContent", "streamGenerateContent"):
                return ("chat" if op == "generateContent" else "stream"), model
            if method == "GET" and op is None:
                return ("model" if model else "models"), model
            return "", None
        if kind == "openai" and path.startswith("/v1/"):
            path = path[3:]
        elif kind == "anthropic":
            path = path[3:] if path.startswith("/v1/") else ""
        if method == "POST" and path == ("/chat/completions" if kind == "openai" else "/messages"):
            return "chat", None
        m = re.fullmatch(r"/models(?:/([^/]+))?", path)
        if method == "GET" and m:
            return ("model" if m.group(1) else "models"), m.group(1)
        return "", None

    def _auth_failure(self) -> tuple[int, str, dict] | None:
        owner, h = self.server.owner, self.headers
        key = owner.api_key
        if owner.kind == "openai":
            got = h.get("Authorization", "")
            if key is not None and got != f"Bearer {key}":
                if not got:
                    return 401, "You didn't provide an API key. Provide it in an Authorization header.", {"code": None}
                return 401, "Incorrect API key provided.", {}
        elif owner.kind == "anthropic":
            bearer = h.get("Authorization", "")
            got = h.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)
            if key is not None and got != key:
                return 401, "x-api-key header is required" if got is None else "invalid x-api-key", {}
            if not h.get("anthropic-version"):
                return 400, "anthropic-version: header is required", {}
        else:
            got = h.get("x-goog-api-key") or (parse_qs(urlsplit(self.path).query).get("key") or [None])[0]
            if key is not None and got != key:
                if got is None:
                    return 403, ("Method doesn't allow unregistered callers (callers without established identity)."
                                 " Please use API Key or other form of API consumer identity to call this API."), {}
                return 403, "API key not valid. Please pass a valid API key.", {}
        return None

    def _respond(self, method: str, body: dict | None, bad_json: bool, fault: Fault | None) -> None:
        owner = self.server.owner
        kind = owner.kind
        route, path_model = self._route(method)
        streaming = route == "stream" or (route == "chat" and body is not None and body.get("stream") is True)
        if fault is not None:
            if fault.kind == "hang":
                self._idle(None)
                return self._abort()
            if fault.kind == "slow_first_byte":
                if not self._idle(fault.delay_s):
                    return self._abort()
                fault = None
            elif fault.kind == "status":
                return self._error(fault.status, retry_after=fault.retry_after)
            elif fault.kind == "unauthorized":
                status = 403 if kind == "gemini" else 401
                message = "API key not valid. Please pass a valid API key." if kind == "gemini" else None
                return self._error(status, message)
            elif fault.kind == "stream_error" and not (kind == "anthropic" and streaming):
                return self._error(529 if kind == "anthropic" else 500)
            elif fault.kind == "account":
                status, message, code = ACCOUNT_ERRORS[kind]
                return self._error(status, message, code=code)
        failure = self._auth_failure()
        if failure is not None:
            status, message, extra = failure
            return self._error(status, message, **extra)
        if route in ("models", "model"):
            return self._models(path_model, fault)
        if not route:
            if kind == "openai":
                return self._error(404, f"Invalid URL ({method} {urlsplit(self.path).path})", code=None)
            return self._error(404, None if kind == "anthropic" else f"Not found: {urlsplit(self.path).path}")
        if bad_json or body is None:
            return self._error(400, "We could not parse the JSON body of your request." if kind == "openai"
                               else "Invalid JSON payload received.")
        required = {"openai": ("model", "messages"), "anthropic": ("model", "max_tokens", "messages"),
                    "gemini": ("contents",)}[kind]
        for name in required:
            if body.get(name) in (None, [], ""):
                if kind == "openai":
                    return self._error(400, f"Missing required parameter: '{name}'.", param=name,
                                       code="missing_required_parameter")
                return self._error(400, f"{name}: Field required" if kind == "anthropic" else f"* {name}: required")
        why = refusal(kind, body, version=self.headers.get("anthropic-version", ""), official=owner.official,
                      prefill=owner.prefill)
        if why is not None:
            return self._error(400, why)
        model = path_model if kind == "gemini" else str(body.get("model"))
        plan = completion_plan(kind, body, owner.reply_for, model, prefill=owner.prefill, fault=fault)
        if streaming and not (kind == "gemini" and parse_qs(urlsplit(self.path).query).get("alt") != ["sse"]):
            error_frame = b"event: error\ndata: " + _dumps(_OVERLOADED) + b"\n\n" if kind == "anthropic" else b""
            done = fault is None or fault.kind != "no_done"
            return self._stream(_stream_events(kind, plan, model, body, done), fault, error_frame)
        if owner.token_delay_s > 0 and not self._idle(owner.token_delay_s * plan.completion_tokens):
            return self._abort()
        if route == "stream":  # streamGenerateContent without alt=sse: one JSON array of the chunks
            return self._json(200, [r for _, _, r in _gemini_chunks(plan, model)], fault)
        return self._json(200, _unary_body(kind, plan, model), fault)

    def _models(self, wanted: str | None, fault: Fault | None) -> None:
        owner = self.server.owner
        model, kind = owner.model, owner.kind
        if kind == "openai":
            entry: dict[str, Any] = {"id": model, "object": "model", "created": 1700000000, "owned_by": "system"}
        elif kind == "anthropic":
            entry = {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"}
        else:
            entry = {"name": f"models/{model}", "version": "001", "displayName": model, "inputTokenLimit": 1048576,
                     "outputTokenLimit": 8192, "supportedGenerationMethods": ["generateContent", "countTokens"]}
        if wanted is not None:
            if wanted.removeprefix("models/") != model:
                return self._error(404, f"The model '{wanted}' does not exist" if kind != "gemini"
                                   else f"models/{wanted} is not found for API version v1beta")
            return self._json(200, entry, fault)
        if kind == "openai":
            return self._json(200, {"object": "list", "data": [entry]}, fault)
        if kind == "anthropic":
            return self._json(200, {"data": [entry], "has_more": False, "first_id": model, "last_id": model}, fault)
        return self._json(200, {"models": [entry]}, fault)


def _turn_text(turn: Any) -> str:
    if not isinstance(turn, dict):
        return ""
    content = turn.get("content", turn.get("parts"))
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if isinstance(p, dict))


def continuing(full: str, *, repeat_words: int = 1) -> Callable[[dict], str]:
    """A `reply` that continues a partial answer as a real model does.

    A final assistant (model) turn that is a prefix of `full` (a server that prefills)
    gets the rest of `full`. Asked by edge's instruction (the partial answer as an
    assistant turn, then edge.backends.remote.CONTINUE_INSTRUCTION), it continues too,
    but first repeats the last `repeat_words` words of the partial, as models asked to
    continue often do. Anything else gets all of `full`: a fresh answer.
    """
    from edge.backends.remote import CONTINUE_INSTRUCTION

    def reply(body: dict) -> str:
        turns = body.get("messages") or body.get("contents") or []
        prefix, repeat = "", 0
        if turns and turns[-1].get("role") in ("assistant", "model"):
            prefix = _turn_text(turns[-1])
        elif len(turns) >= 2 and _turn_text(turns[-1]) == CONTINUE_INSTRUCTION:
            prefix = _turn_text(turns[-2])
            repeat = repeat_words
        if not prefix or not full.startswith(prefix):
            return full
        words = re.findall(r"\s*\S+", prefix)
        start = len(prefix) - sum(len(w) for w in words[len(words) - repeat:]) if repeat and words else len(prefix)
        return full[start:]

    return reply


class ProviderServer:
    """A loopback server speaking one provider's wire format; see the module docstring."""

    def __init__(self, kind: str, *, reply: str | Callable[[dict], str] = "Hello from the loopback provider.",
                 api_key: str | None = None, model: str = "test-model", host: str = "127.0.0.1", port: int = 0,
                 token_delay_s: float = 0.0, official: bool = False, prefill: bool | None = None) -> None:
        """`official`: hold OpenAI's own limits (else a compatible server's). `prefill`: continue a
        final assistant turn (default: only an openai server that is not `official`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown provider kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self.reply = reply
        self.api_key = api_key
        self.model = model
        self.host = host
        self.token_delay_s = token_delay_s
        self.official = official
        self.prefill = (kind == "openai" and not official) if prefill is None else prefill
        if port == 0:  # pick the port now, so that base_url is known (and stable) before start()
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.port: int = port
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()  # requests, fault and its counter
        self._state_lock = threading.RLock()  # the listener
        self._fault: Fault | None = None
        self._fault_seen = 0
        self._want_running = False
        self._listener: _Listener | None = None

    @property
    def base_url(self) -> str:
        root = f"http://{self.host}:{self.port}"
        return f"{root}/v1" if self.kind == "openai" else root

    @property
    def fault(self) -> Fault | None:
        return self._fault

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def reply_for(self, body: Any) -> str:
        return str(self.reply(body)) if callable(self.reply) else self.reply

    def start(self) -> ProviderServer:
        with self._state_lock:
            self._want_running = True
            self._reconcile()
        return self

    def stop(self) -> None:
        with self._state_lock:
            self._want_running = False
            self._reconcile()

    def set_fault(self, fault: Fault | None) -> None:
        if fault is not None and not isinstance(fault, Fault):
            raise TypeError("set_fault takes a Fault or None")
        with self._state_lock:
            with self._lock:
                self._fault = None if fault is None or fault.kind == "none" else fault
                self._fault_seen = 0
            self._reconcile()

    def _reconcile(self) -> None:
        should_listen = self._want_running and not (self._fault is not None and self._fault.kind == "refuse")
        if should_listen and self._listener is None:
            try:
                self._listener = _Listener(self)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        elif not should_listen and self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            seen, self._fault_seen = self._fault_seen, self._fault_seen + 1
            return fault.for_request(seen)

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ProviderServer({self.kind!r}, base_url={self.base_url!r}, listening={self.listening})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.testing.providers",
                                     description="Serve one provider's wire format on loopback until Ctrl-C.")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--reply", default="Hello from the loopback provider.")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed words")
    parser.add_argument("--fault", choices=FAULT_KINDS, default="none")
    parser.add_argument("--status", type=int, default=500, help="for --fault status")
    args = parser.parse_args(argv)
    server = ProviderServer(args.kind, reply=args.reply, api_key=args.api_key, model=args.model, host=args.host,
                            port=args.port, token_delay_s=args.token_delay)
    server.set_fault(Fault(args.fault, status=args.status))
    server.start()
    # Our own handlers: a process started in the background by a shell without job
    # control inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"{args.kind} loopback provider at {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
