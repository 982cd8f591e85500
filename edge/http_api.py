"""The OpenAI-compatible HTTP front door: POST /v1/chat/completions, GET /v1/models.

A translation layer only. An OpenAI chat request becomes the same GenerateRequest a
gRPC client would send, and goes through the same validation, doors (tokens, rate
limit), routing, ledger and metrics; errors come back in OpenAI's error shape with
the matching HTTP status. Served by uvicorn inside the daemon's own event loop, on
its own port, with the gRPC listener's TLS settings.

Routing hints: the body's `edge` object (`preference`, `max_latency_ms`,
`max_cost_usd`) or the headers `X-Edge-Preference`, `X-Edge-Max-Latency-Ms`,
`X-Edge-Max-Cost-Usd`; `X-Request-Id` names the request; `X-Edge-Timeout-Ms` is its
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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edge.engine import TIER_NAMES, Result
from edge.errors import EdgeError, InvalidArgument, Unavailable
from edge.failover import Notice
from edge.security import Refusal, bearer_token
from edge.v1 import router_pb2 as pb
from edge.validation import validate

if TYPE_CHECKING:
    from edge.server import Daemon

__all__ = ["HttpFrontDoor", "build_app"]

log = logging.getLogger("edge.http")

_INT32 = 2**31 - 1
_PREFERENCES = {"auto": pb.ROUTE_PREFERENCE_AUTO, "local_only": pb.ROUTE_PREFERENCE_LOCAL_ONLY,
                "cloud_only": pb.ROUTE_PREFERENCE_CLOUD_ONLY}
# Model names that mean "let the router choose" (OpenAI clients must send some model).
AUTO_MODELS = ("", "auto", "edge")
# The gRPC validator names proto fields; an HTTP client knows the OpenAI names.
_FIELD_NAMES = {"params.max_tokens": "max_tokens", "params.temperature": "temperature", "params.top_p": "top_p",
                "params.stop": "stop", "params.seed": "seed", "routing.preference": "edge.preference",
                "routing.max_cost_usd": "edge.max_cost_usd", "request_id": "X-Request-Id"}
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (503, "service_unavailable_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
}


# -- the request body -------------------------------------------------------------------------

class BodyTooLarge(InvalidArgument):
    """INVALID_ARGUMENT to the ledger and metrics, HTTP 413 to the client."""


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
                          max_cost_usd=headers.get("x-edge-max-cost-usd", 0.0))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidArgument("X-Edge-" + str(first["loc"][0]).replace("_", "-").title(), first["msg"]) from None


def to_generate_request(body: ChatRequest, headers: Any) -> pb.GenerateRequest:
    """The gRPC request this HTTP request means; InvalidArgument for what has no equivalent."""
    if body.n != 1:
        raise InvalidArgument("n", f"only n = 1 is supported, got {body.n}")
    if body.tools:
        raise InvalidArgument("tools", "tool calls are not supported by this router")
    messages = []
    for i, m in enumerate(body.messages):
        role = "system" if m.role == "developer" else m.role  # OpenAI's newer name for the system role
        messages.append(pb.ChatMessage(role=role, content=_content(i, m)))
    params = pb.GenerationParams(max_tokens=body.max_completion_tokens or body.max_tokens or 0)
    if body.temperature is not None:
        params.temperature = body.temperature
    if body.top_p is not None:
        params.top_p = body.top_p
    if body.seed is not None:
        if body.seed >= 2**32:
            raise InvalidArgument("seed", f"must be between 0 and {2**32 - 1}, got {body.seed}")
        params.seed = body.seed
    if body.stop is not None:
        params.stop.extend([body.stop] if isinstance(body.stop, str) else body.stop)
    hints = body.edge or _header_hints(headers)
    model = "" if body.model in AUTO_MODELS else body.model
    return pb.GenerateRequest(
        messages=messages, params=params, model=model, request_id=headers.get("x-request-id", ""),
        routing=pb.RoutingHints(preference=_PREFERENCES[hints.preference], max_latency_ms=hints.max_latency_ms,
                                max_cost_usd=hints.max_cost_usd))


# -- the response ----------------------------------------------------------------------------

def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"


def edge_extension(r: Result) -> dict[str, Any]:
    """The `edge` object of a response: who served it and why (the trace of the gRPC answer)."""
    t = r.timings
    return {
        "request_id": r.request_id,
        "served_by": {"tier": TIER_NAMES[r.tier], "backend": r.backend, "model": r.model},
        "reasons": [{"code": x.code, "detail": x.detail} for x in r.trace],
        "degraded": r.degraded,
        "cost_usd": r.cost_usd,
        "attempts": [{"backend": a.backend, "tier": TIER_NAMES.get(a.tier, ""), "outcome": a.outcome,
                      "latency_ms": round(a.latency_ms, 2), "detail": a.detail} for a in r.attempts],
        "timings": {"queue_wait_ms": t.queue_wait_ms, "time_to_first_token_ms": t.time_to_first_token_ms,
                    "total_ms": t.total_ms, "tokens_per_second": t.tokens_per_second},
        "cache": None if r.cache is None else {
            "match": r.cache.match, "similarity": r.cache.similarity, "age_s": r.cache.age_s,
            "original": {"tier": TIER_NAMES.get(r.cache.original.tier, ""), "backend": r.cache.original.backend,
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


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, str | None]:
    """(gRPC status name for metrics and logs, the message, the OpenAI `param`)."""
    from edge.server import status_code_for

    if isinstance(exc, InvalidArgument):
        field = _FIELD_NAMES.get(exc.field, exc.field)
        why = str(exc)[len(exc.field) + 2:]
        return grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {why}", field
    if isinstance(exc, EdgeError):
        return status_code_for(exc), str(exc), None
    return grpc.StatusCode.INTERNAL, "", None


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
        """(tenant, None) to go on, or (tenant, the refusal to send)."""
        doors = self.daemon.doors
        if not doors.closed:
            return "", None
        peer = request.client.host if request.client else "unknown"
        client, refusal = doors.admit(bearer_token(request.headers.get("authorization")), f"http:{peer}")
        # Like gRPC: the tenant is the token's name; without tokens, everyone on the device is one tenant.
        tenant = client if doors.tokens is not None else ""
        return tenant, (self._refused(refusal) if refusal is not None else None)

    def _fail(self, request_id: str, exc: BaseException, started: float) -> JSONResponse:
        code, message, param = _status_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("internal error", extra={"request_id": request_id})
            message = f"internal error (request_id {request_id})"
        log.info("request failed", extra={"request_id": request_id, "status": code.name, "error": message,
                                          "front_door": "http"})
        self.engine.record_failure(request_id, code.name, (time.monotonic() - started) * 1000)
        status, kind = _HTTP_STATUS.get(code, (500, "server_error"))
        if isinstance(exc, BodyTooLarge):
            status = 413
        err_code = "model_not_found" if code == grpc.StatusCode.NOT_FOUND else None
        return JSONResponse(error_body(message, kind, param, err_code), status)

    async def models(self, request: Request) -> Response:
        if (refused := self._admit(request)[1]) is not None:
            return refused
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "edge"} for name in AUTO_MODELS[1:2]]
        data += [{"id": d.name, "object": "model", "created": 0, "owned_by": "edge-local"}
                 for d, _ in self.engine.describe()]
        return JSONResponse({"object": "list", "data": data})

    async def _body(self, request: Request) -> ChatRequest:
        limit = self.daemon.settings.http.max_body_bytes
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise BodyTooLarge("body", f"is larger than the limit of {limit} bytes (http.max_body_bytes)")
        try:
            return ChatRequest.model_validate_json(bytes(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidArgument(loc, first["msg"]) from None

    async def chat(self, request: Request) -> Response:
        started = time.monotonic()
        tenant, refused = self._admit(request)
        if refused is not None:
            return refused
        request_id = request.headers.get("x-request-id", "") or uuid.uuid4().hex
        try:
            if self.daemon.state != "serving":
                raise Unavailable(f"edge is {self.daemon.state}; retry shortly")
            body = await self._body(request)
            proto = to_generate_request(body, request.headers)
            proto.request_id = request_id
            timeout = request.headers.get("x-edge-timeout-ms")
            remaining = None
            if timeout is not None:
                if not timeout.isdigit() or int(timeout) == 0:
                    raise InvalidArgument("X-Edge-Timeout-Ms", f"must be a positive integer, got {timeout[:32]!r}")
                remaining = int(timeout) / 1000
            valid = validate(proto, self.engine.settings.limits, request_id=request_id, time_remaining=remaining,
                             stream=body.stream, tenant=tenant)
            events = self.engine.generate(valid)
            if not body.stream:
                result = await _unless_disconnected(request, _last(events))
                if result is None:
                    log.info("request cancelled", extra={"request_id": request_id, "front_door": "http"})
                    return Response(status_code=499)  # nobody is listening; the model has stopped
                self.daemon.log_result(result, valid)
                return JSONResponse(completion(result, int(time.time())))
            # Wait for the first event before answering 200, so that an early error
            # (queue full, nothing available) is a proper HTTP status, not a broken stream.
            first = await anext(events)
        except Exception as exc:  # noqa: BLE001 - mapped to an OpenAI error, never crashes the daemon
            return self._fail(request_id, exc, started)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(self._sse(events, first, valid, body.model or "auto", include_usage, started),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Request-Id": request_id})

    async def _sse(self, events: AsyncIterator[Any], first: Any, valid: Any, model: str, include_usage: bool,
                   started: float) -> AsyncIterator[bytes]:
        request_id = valid.generation.request_id
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
                    self.daemon.log_result(event, valid)
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
        except asyncio.CancelledError:
            log.info("request cancelled", extra={"request_id": request_id, "front_door": "http"})
            raise
        except Exception as exc:  # noqa: BLE001 - the status line is sent: report in-band, as OpenAI does
            failed = self._fail(request_id, exc, started)
            yield b"data: " + failed.body + b"\n\n"
        finally:
            await events.aclose()  # a client that went away stops the generation


async def _last(events: AsyncIterator[Any]) -> Result:
    result = None
    try:
        async for event in events:
            if isinstance(event, Result):
                result = event
    finally:
        await events.aclose()  # on cancellation: stops the generation at its next token
    assert result is not None
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


class HttpFrontDoor:
    """uvicorn serving build_app() on the daemon's event loop."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, listen: str) -> str:
        import uvicorn

        from edge.errors import ConfigError

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
        config = uvicorn.Config(build_app(self.daemon), log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=int(self.daemon.settings.server.shutdown_grace_s) or None,
                                **tls)
        self._server = uvicorn.Server(config)
        # _serve, not serve(): serve() installs its own SIGINT/SIGTERM handlers over the daemon's.
        self._task = asyncio.create_task(self._server._serve(sockets=[sock]))  # noqa: SLF001
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ConfigError(f"http.listen: the HTTP server on {listen} stopped at start")
            await asyncio.sleep(0.01)
        bound = sock.getsockname()
        return f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
