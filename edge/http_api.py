"""The OpenAI-compatible HTTP front door: POST /v1/chat/completions, GET /v1/models.

A translation layer only. An OpenAI chat request becomes the core's Draft, as a gRPC
request does, and goes through the same admission (tokens, rate limit, validation),
routing, ledger and metrics; errors come back in OpenAI's error shape with the HTTP
status that edge.errors.wire_error gives. Served by uvicorn inside the daemon's own event loop, on
its own port, with the gRPC listener's TLS settings.

Routing hints: the body's `edge` object (`preference`, `max_latency_ms`,
`max_cost_usd`, `strategy`) or the headers `X-Edge-Preference`, `X-Edge-Max-Latency-Ms`,
`X-Edge-Max-Cost-Usd`, `X-Edge-Strategy`; `X-Request-Id` names the request; `X-Edge-Timeout-Ms` is its
deadline. Each response (and the last stream chunk) carries an `edge` object: which
tier, backend and model served it, the reason codes, cost, attempts and timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edge.errors import BodyTimeout, ConfigError, InvalidArgument, PayloadTooLarge, wire_error
from edge.http_limits import ConnectionLimits, guarded_protocol
from edge.pipeline.admission import Arrival
from edge.security import Refusal, bearer_token, client_address
from edge.types import Notice, Preference, Result, Strategy
from edge.validation import Draft

if TYPE_CHECKING:
    from edge.server import Daemon

__all__ = ["HttpFrontDoor", "build_app"]

log = logging.getLogger("edge.http")

_INT32 = 2**31 - 1
# Model names that mean "let the router choose" (OpenAI clients must send some model).
AUTO_MODELS = ("", "auto", "edge")
# The gRPC validator names proto fields; an HTTP client knows the OpenAI names.
_FIELD_NAMES = {"params.max_tokens": "max_tokens", "params.temperature": "temperature", "params.top_p": "top_p",
                "params.stop": "stop", "params.seed": "seed", "routing.preference": "edge.preference",
                "routing.max_cost_usd": "edge.max_cost_usd", "routing.strategy": "edge.strategy",
                "request_id": "X-Request-Id"}


# -- the request body -------------------------------------------------------------------------

class _Open(BaseModel):
    # OpenAI clients send fields we do not use (user, logit_bias, ...): accept and ignore them.
    model_config = ConfigDict(extra="allow")


class _TextPart(_Open):
    type: str
    text: str = ""


class _Message(_Open):
    role: str
    content: str | list[_TextPart] | None = None


class _StreamOptions(_Open):
    include_usage: bool = False


class _EdgeHints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preference: Literal["auto", "local_only", "cloud_only"] = "auto"
    max_latency_ms: int = Field(0, ge=0, le=_INT32)
    max_cost_usd: float = Field(0.0, ge=0)
    strategy: Literal["auto", "direct", "plan"] = "auto"


class ChatRequest(_Open):
    model: str = ""
    messages: list[_Message]
    max_tokens: int | None = Field(None, ge=0, le=_INT32)
    max_completion_tokens: int | None = Field(None, ge=0, le=_INT32)
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int = 1
    edge: _EdgeHints | None = None
    tools: list[Any] | None = None


def _content(i: int, m: _Message) -> str:
    if m.content is None:
        return ""
    if isinstance(m.content, str):
        return m.content
    for j, part in enumerate(m.content):
        if part.type != "text":
            raise InvalidArgument(f"messages[{i}].content[{j}].type", f"only 'text' parts are supported, got {part.type[:32]!r}")
    return "".join(part.text for part in m.content)


def _header_hints(headers: Any) -> _EdgeHints:
    try:
        return _EdgeHints(preference=headers.get("x-edge-preference", "auto"),
                          max_latency_ms=headers.get("x-edge-max-latency-ms", 0),
                          max_cost_usd=headers.get("x-edge-max-cost-usd", 0.0),
                          strategy=headers.get("x-edge-strategy", "auto"))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidArgument("X-Edge-" + str(first["loc"][0]).replace("_", "-").title(), first["msg"]) from None


def to_draft(body: ChatRequest, headers: Any, request_id: str) -> Draft:
    """The core's view of this HTTP request; InvalidArgument for what has no equivalent."""
    if body.n != 1:
        raise InvalidArgument("n", f"only n = 1 is supported, got {body.n}")
    if body.tools:
        raise InvalidArgument("tools", "tool calls are not supported by this router")
    # "developer" is OpenAI's newer name for the system role.
    messages = [("system" if m.role == "developer" else m.role, _content(i, m)) for i, m in enumerate(body.messages)]
    stop = [] if body.stop is None else [body.stop] if isinstance(body.stop, str) else body.stop
    hints = body.edge or _header_hints(headers)
    return Draft(messages=messages, max_tokens=body.max_completion_tokens or body.max_tokens or 0,
                 temperature=body.temperature, top_p=body.top_p, stop=stop, seed=body.seed,
                 preference=Preference(hints.preference), max_latency_ms=hints.max_latency_ms,
                 max_cost_usd=hints.max_cost_usd, strategy=Strategy(hints.strategy), request_id=request_id,
                 model="" if body.model in AUTO_MODELS else body.model)



# -- the response ----------------------------------------------------------------------------

def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def edge_extension(r: Result) -> dict[str, Any]:
    """The `edge` object of a response: who served it and why (the trace of the gRPC answer)."""
    t = r.timings
    return {
        "request_id": r.request_id,
        "served_by": {"tier": str(r.tier), "backend": r.backend, "model": r.model},
        "reasons": [{"code": x.code, "detail": x.detail} for x in r.trace],
        "degraded": r.degraded,
        "cost_usd": r.cost_usd,
        "attempts": [{"backend": a.backend, "tier": str(a.tier), "outcome": str(a.outcome),
                      "latency_ms": round(a.latency_ms, 2), "detail": a.detail} for a in r.attempts],
        "timings": {"queue_wait_ms": t.queue_wait_ms, "time_to_first_token_ms": t.time_to_first_token_ms,
                    "total_ms": t.total_ms, "tokens_per_second": t.tokens_per_second},
        "cache": None if r.cache is None else {
            "match": r.cache.match, "similarity": r.cache.similarity, "age_s": r.cache.age_s,
            "original": {"tier": str(r.cache.original.tier), "backend": r.cache.original.backend,
                         "model": r.cache.original.model}},
    }


def _usage(r: Result) -> dict[str, int]:
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens}


def completion(r: Result, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{r.request_id}", "object": "chat.completion", "created": created, "model": r.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text, "refusal": None},
                     "logprobs": None, "finish_reason": _finish(r.finish_reason)}],
        "usage": _usage(r), "system_fingerprint": None, "edge": edge_extension(r),
    }


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -- the app -----------------------------------------------------------------------------------

class _Handler:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.engine = daemon.engine

    def _refused(self, refusal: Refusal) -> JSONResponse:
        if refusal.reason == "rate_limited":
            return JSONResponse(error_body(refusal.message, "rate_limit_error", code="rate_limit_exceeded"), 429,
                                headers={"Retry-After": str(max(1, round(refusal.retry_after_s + 0.5)))})
        return JSONResponse(error_body(refusal.message, "authentication_error", code="invalid_api_key"), 401)

    def _admit(self, request: Request) -> tuple[str, JSONResponse | None]:
        """(tenant, None) to go on, or (tenant, the refusal to send). Like gRPC: the tenant
        is the token's name, else the client certificate's identity under mutual TLS, else
        '' (everyone on the device is one tenant)."""
        doors = self.daemon.doors
        identity = self._identity(request)
        if not doors.closed:
            return identity, None
        peer = client_address(request.client.host) if request.client else "unknown"
        client, refusal = doors.admit(bearer_token(request.headers.get("authorization")), peer)
        tenant = client if doors.tokens is not None else identity
        return tenant, (self._refused(refusal) if refusal is not None else None)

    def _identity(self, request: Request) -> str:
        limits = self.daemon.http.limits if self.daemon.http is not None else None
        if limits is None or request.client is None:
            return ""
        return limits.identities.get((request.client.host, request.client.port), "")

    @staticmethod
    def _error(exc: BaseException, request_id: str) -> JSONResponse:
        """The OpenAI error body and HTTP status for `exc` (edge.errors.wire_error's table)."""
        wire = wire_error(exc, request_id)
        message, param = wire.message, None
        if wire.field is not None:  # name the field as an OpenAI client knows it
            param = _FIELD_NAMES.get(wire.field, wire.field)
            message = f"{param}: {message[len(wire.field) + 2:]}"
        code = "model_not_found" if wire.grpc_code == "NOT_FOUND" else None
        return JSONResponse(error_body(message, wire.openai_type, param, code), wire.http_status)

    async def models(self, request: Request) -> Response:
        if (refused := self._admit(request)[1]) is not None:
            return refused
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "edge"} for name in AUTO_MODELS[1:2]]
        data += [{"id": d.name, "object": "model", "created": 0, "owned_by": "edge-local"}
                 for d, _ in self.engine.describe()]
        return JSONResponse({"object": "list", "data": data})

    async def _body(self, request: Request) -> ChatRequest:
        http = self.daemon.settings.http
        limit = http.max_body_bytes
        raw = bytearray()
        try:
            async with asyncio.timeout(http.body_timeout_s):  # a body trickled byte by byte holds a socket
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > limit:
                        raise PayloadTooLarge("body", f"is larger than the limit of {limit} bytes (http.max_body_bytes)")
        except TimeoutError:
            raise BodyTimeout(f"the request body did not arrive within {http.body_timeout_s:g} s "
                              "(http.body_timeout_s)") from None
        try:
            return ChatRequest.model_validate_json(bytes(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidArgument(loc, first["msg"]) from None

    async def _arrival(self, request: Request, request_id: str, tenant: str) -> tuple[ChatRequest, Draft, Arrival]:
        """Read and translate the request; what is wrong with it raises, before the core sees it."""
        body = await self._body(request)
        draft = to_draft(body, request.headers, request_id)
        return body, draft, Arrival(request_id=request_id, door="http", stream=body.stream,
                                    time_remaining=_timeout(request.headers.get("x-edge-timeout-ms")), tenant=tenant,
                                    peer=client_address(request.client.host) if request.client else "")

    async def chat(self, request: Request) -> Response:
        started = time.monotonic()
        tenant, refused = self._admit(request)
        if refused is not None:
            return refused
        request_id = request.headers.get("x-request-id", "") or uuid.uuid4().hex
        try:
            body, draft, arrival = await self._arrival(request, request_id, tenant)
        except Exception as exc:  # noqa: BLE001 - mapped to an OpenAI error, never crashes the daemon
            self.engine.reject(request_id, exc, started, "http")
            return self._error(exc, request_id)
        events = self.engine.serve(draft, arrival)
        try:
            if not body.stream:
                result = await _unless_disconnected(request, _last(events))
                if result is None:
                    return Response(status_code=499)  # nobody is listening; the model has stopped
                return JSONResponse(completion(result, int(time.time())))
            # Wait for the first event before answering 200, so that an early error
            # (queue full, nothing available) is a proper HTTP status, not a broken stream.
            first = await anext(events)
        except Exception as exc:  # noqa: BLE001 - recorded by the engine; mapped to an OpenAI error here
            return self._error(exc, request_id)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(self._sse(events, first, request_id, body.model or "auto", include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Request-Id": request_id})

    async def _sse(self, events: AsyncIterator[Any], first: Any, request_id: str, model: str,
                   include_usage: bool) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            body = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created,
                    "model": model, "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
            return b"data: " + json.dumps(body).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        try:
            event = first
            while True:
                if isinstance(event, Result):
                    yield chunk({}, _finish(event.finish_reason), edge=edge_extension(event))
                    if include_usage:
                        usage = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created,
                                 "model": model, "choices": [], "usage": _usage(event)}
                        yield b"data: " + json.dumps(usage).encode() + b"\n\n"
                    break
                if isinstance(event, Notice):
                    yield chunk({}, edge={"notice": {"code": event.reason.code, "detail": event.reason.detail}})
                else:
                    yield chunk({"content": event})
                event = await anext(events)
            yield b"data: [DONE]\n\n"
        except Exception as exc:  # noqa: BLE001 - the status line is sent: report in-band, as OpenAI does
            yield b"data: " + self._error(exc, request_id).body + b"\n\n"
        finally:
            await events.aclose()  # a client that went away stops the generation


def _timeout(value: str | None) -> float | None:
    """X-Edge-Timeout-Ms: the request's deadline in seconds, or None."""
    if value is None:
        return None
    # isascii: str.isdigit() is also true for "²" and other digits int() refuses.
    if not (value.isascii() and value.isdigit()) or int(value) == 0:
        raise InvalidArgument("X-Edge-Timeout-Ms", f"must be a positive integer, got {value[:32]!r}")
    return int(value) / 1000


async def _last(events: AsyncIterator[Any]) -> Result:
    result = None
    try:
        async for event in events:
            if isinstance(event, Result):
                result = event
    finally:
        await events.aclose()  # on cancellation: stops the generation at its next token
    if result is None:  # the engine always ends with a Result or raises; this would be a bug
        raise RuntimeError("generation ended without a result")
    return result


async def _unless_disconnected(request: Request, work: Any) -> Result | None:
    """Run `work` unless the client hangs up first (then cancel it and return None), as
    gRPC does for a cancelled call: a unary answer nobody waits for is not generated."""
    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


def build_app(daemon: Daemon) -> Starlette:
    h = _Handler(daemon)
    return Starlette(routes=[
        Route("/v1/chat/completions", h.chat, methods=["POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
    ])


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the daemon's event loop: the daemon owns the signals, and start()
    waits for the listener without polling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT/SIGTERM/SIGHUP stay the daemon's (edge.server.Daemon.install_signal_handlers)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class HttpFrontDoor:
    """uvicorn serving build_app() on the daemon's event loop."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.limits: ConnectionLimits | None = None

    async def start(self, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            sock = socket.create_server((host, int(port)), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except OSError as exc:
            raise ConfigError(f"http.listen: cannot bind {listen}: {exc.strerror}") from None
        # Accepted connections inherit this: without it a response's body waits behind its
        # headers for the client's delayed ACK, 40 ms on every keep-alive request after the first.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sec = self.daemon.settings.security
        tls: dict[str, Any] = {}
        if sec.tls_cert_file:
            tls = {"ssl_certfile": sec.tls_cert_file, "ssl_keyfile": sec.tls_key_file}
            if sec.tls_client_ca_file:
                tls |= {"ssl_ca_certs": sec.tls_client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        http = self.daemon.settings.http
        self.limits = ConnectionLimits(http.max_connections, http.max_connections_per_client, http.header_timeout_s)
        config = uvicorn.Config(build_app(self.daemon), log_config=None, access_log=False, lifespan="off",
                                http=guarded_protocol(self.limits),
                                timeout_graceful_shutdown=int(self.daemon.settings.server.shutdown_grace_s) or None,
                                **tls)
        server = self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            raise ConfigError(f"http.listen: the HTTP server on {listen} stopped at start")
        bound = sock.getsockname()
        return f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
