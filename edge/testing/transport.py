"""An in-process provider: an httpx transport that answers with a provider's real wire format.

The companion of edge.testing.providers (a real server over loopback TCP): the same
bodies, stream events and error shapes (built by edge.testing._wire), the same fault
kinds, but no socket and no thread, so the core's failover, breakers and cascade can
be tested in one event loop, in milliseconds:

    transport = ProviderTransport("openai", reply="Paris.")
    engine = Engine(settings, Injected(transport=transport))
    transport.set_fault(Fault("status", status=503, times=1))

Only chat completions (unary and streaming) and the model listing (what a probe asks
for) are answered; the API key is not checked. Faults: refuse (connection refused),
hang (never answers: the client's own timeout ends it), status, cut_stream,
malformed_json, unauthorized, flap, account, blocked and no_done, as the server
documents them; and the services' refusals (edge.testing._wire.refusal).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from edge.testing._wire import (
    ACCOUNT_ERRORS,
    _error_body,
    _retry_after,
    _stream_events,
    _unary_body,
    completion_plan,
    refusal,
)
from edge.testing.providers import Fault

__all__ = ["Hosts", "ProviderTransport", "Seen"]


@dataclass(frozen=True)
class Seen:
    """A request the transport received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when it arrived


@dataclass
class ProviderTransport(httpx.AsyncBaseTransport):
    kind: str = "openai"
    reply: str | Callable[[dict], str] = "Hello from the in-process provider."
    requests: list[Seen] = field(default_factory=list)
    official: bool = False        # hold OpenAI's own limits, as ProviderServer(official=True)
    prefill: bool | None = None   # continue a final assistant turn (default: openai, not official)
    _fault: Fault | None = None
    _seen: int = 0

    def set_fault(self, fault: Fault | None) -> None:
        self._fault, self._seen = fault, 0

    def _next_fault(self) -> Fault | None:
        """The server's schedule (Fault.for_request), counted from set_fault."""
        if self._fault is None:
            return None
        seen, self._seen = self._seen, self._seen + 1
        return self._fault.for_request(seen)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._next_fault()
        if fault is not None and fault.kind == "refuse":
            raise httpx.ConnectError("connection refused (in-process provider)", request=request)
        body = json.loads(request.content) if request.content else None
        self.requests.append(Seen(request.method, request.url.path, dict(request.headers), body, time.monotonic()))
        if fault is not None and fault.kind == "hang":
            await asyncio.Event().wait()  # until the client's timeout cancels it
        if fault is not None and fault.kind in ("status", "unauthorized"):
            status = fault.status if fault.kind == "status" else 403 if self.kind == "gemini" else 401
            headers = {"Retry-After": _retry_after(fault.retry_after)} if fault.retry_after is not None else {}
            return httpx.Response(status, headers=headers, json=_error_body(self.kind, status))
        if fault is not None and fault.kind == "account":
            status, message, code = ACCOUNT_ERRORS[self.kind]
            return httpx.Response(status, json=_error_body(self.kind, status, message, code=code))
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": []})
        why = refusal(self.kind, body or {}, version=request.headers.get("anthropic-version", ""),
                      official=self.official, prefill=self._prefills)
        if why is not None:
            return httpx.Response(400, json=_error_body(self.kind, 400, why))
        return self._answer(request, body or {}, fault)

    @property
    def _prefills(self) -> bool:
        return (self.kind == "openai" and not self.official) if self.prefill is None else self.prefill

    def _answer(self, request: httpx.Request, body: dict, fault: Fault | None) -> httpx.Response:
        path = request.url.path
        in_path = re.search(r"models/([^/:]+)", path)
        model = in_path.group(1) if self.kind == "gemini" and in_path else str(body.get("model"))
        plan = completion_plan(self.kind, body, self.reply, model, prefill=self._prefills, fault=fault)
        broken = fault.kind if fault is not None else ""
        if body.get("stream") is True or path.endswith(":streamGenerateContent"):
            events = _stream_events(self.kind, plan, model, body, broken != "no_done")
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  stream=_Stream(events, broken, fault))
        if broken == "malformed_json":
            return httpx.Response(200, content=b'{"id": "malformed", "choices": [{"message": {"content": "unter')
        return httpx.Response(200, json=_unary_body(self.kind, plan, model))


class _Stream(httpx.AsyncByteStream):
    """The events of a stream; `cut_stream` raises what a dropped connection raises mid-body."""

    def __init__(self, events: list[tuple[bool, int, bytes]], broken: str, fault: Fault | None) -> None:
        self.events, self.broken, self.fault = events, broken, fault

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.broken == "malformed_json":
            yield b"data: {not json\n\n"
            return
        sent = 0
        for terminal, words, frame in self.events:
            if self.broken == "cut_stream" and self.fault is not None and (
                    terminal or (words and sent >= self.fault.after_events)):
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            await asyncio.sleep(0)  # one event per loop turn, as over a socket
            yield frame
            sent += words


class Hosts(httpx.AsyncBaseTransport):
    """One transport per host name: `Hosts({"lan": ProviderTransport(), ...})` answers
    http://lan/... with the first, so several remote backends share one injected transport."""

    def __init__(self, by_host: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.by_host = by_host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.by_host.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no in-process provider named {request.url.host!r}", request=request)
        return await transport.handle_async_request(request)
