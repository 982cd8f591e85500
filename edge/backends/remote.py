"""What every remote (HTTP) backend shares: the base class, SSE parsing, error
classification, Retry-After parsing and the time limits of one attempt.

Contract of a `RemoteBackend` (the provider files only build request bodies and
read responses):

* `generate()` uses the provider's streaming API when `request.stream` is True and
  yields one text chunk per delta as it arrives, else its unary API and one text
  chunk; it always ends with exactly one chunk carrying `finish_reason` ("stop" or
  "length") and the provider's reported usage (0 where it reported none).
* A stream that ends before its terminal event raises `RetryableBackendError`:
  a truncated answer never ends as a success.
* Failures raise only `edge.errors` types, classified by exception type and HTTP
  status, never by message text: `classify_status` is the one table.
* Time limits: connect (httpx), first byte (request sent -> response headers and,
  for streams, the first event), idle (gap between stream events) and overall
  (min(total_s, the caller's remaining deadline)). Each expiry is a
  `RetryableBackendError` naming the limit.
* The API key never appears in an exception message or repr: messages name the
  backend, the HTTP status and the provider's reason, and are scrubbed anyway
  because providers and proxies do echo keys back.
"""

from __future__ import annotations

import abc
import asyncio
import codecs
import email.utils
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx

from edge.backends.base import Backend, Chunk, GenerationRequest, Message, ModelDescription, SamplingParams, Timeouts
from edge.backends.capabilities import Capabilities, capabilities
from edge.backends.text_filters import OverlapTrimmer, StopCutter
from edge.errors import BackendError, BackendMisconfigured, BackendRejectedRequest, RetryableBackendError

__all__ = ["ACCOUNT_STATUS", "CONTINUE_INSTRUCTION", "RemoteBackend", "SSEEvent", "SSEParser", "StreamState", "classify_status", "parse_retry_after",
           "sampling_fields"]

T = TypeVar("T")
_NEWLINE = re.compile(r"\r\n|\r|\n")
_MAX_REASON = 500
_MISCONFIGURED = frozenset({401, 402, 403, 404, 405, 410})
# What an adapter reports for an account or region problem a provider sends with another
# status (a 400 or a 429): like a bad key, the backend leaves rotation until it is fixed.
ACCOUNT_STATUS = 402
_RETRYABLE = frozenset({408, 409, 425, 429})
# Shape errors while reading a provider's JSON: the response is malformed, and
# malformed responses are worth a retry elsewhere.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError)


def sampling_fields(p: SamplingParams, caps: Capabilities, *, temperature: str, top_p: str, stop: str,
                    seed: str | None) -> dict[str, Any]:
    """The optional sampling parameters a request set, under each provider's names, as
    far as `caps` lets it take them (seed=None: the provider has none, e.g. Anthropic):
    a temperature outside the provider's range is clamped to it; top_p is dropped where
    the provider takes none, or not with a temperature (the temperature is kept). Stop
    sequences come already cut to the provider's limit (RemoteBackend._adapt; edge
    applies the rest)."""
    out: dict[str, Any] = {}
    if p.temperature is not None and caps.temperature is not None:
        low, high = caps.temperature
        out[temperature] = min(max(p.temperature, low), high)
    if p.top_p is not None and caps.top_p and (temperature not in out or caps.temperature_with_top_p):
        out[top_p] = p.top_p
    if p.stop:
        out[stop] = list(p.stop)
    if p.seed is not None and seed is not None:
        out[seed] = p.seed
    return out


@dataclass(frozen=True)
class SSEEvent:
    event: str = "message"
    data: str = ""


class SSEParser:
    """Incremental text/event-stream parser (the WHATWG rules): feed bytes split
    anywhere (inside a line, a UTF-8 character or a CRLF) and get whole events."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._event = ""
        self._data: list[str] = []
        self._started = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(data)
        if text and not self._started:
            self._started, text = True, text.removeprefix("\ufeff")
        self._buf += text
        out: list[SSEEvent] = []
        pos = 0
        for m in _NEWLINE.finditer(self._buf):
            if m.group() == "\r" and m.end() == len(self._buf):
                break  # may be the first half of a CRLF whose LF is in the next read
            event = self._line(self._buf[pos:m.start()])
            pos = m.end()
            if event is not None:
                out.append(event)
        self._buf = self._buf[pos:]
        return out

    def close(self) -> SSEEvent | None:
        """End of stream. A last event lacking its blank line still counts when its
        lines are complete; a line cut mid-way is dropped (it may be half a JSON)."""
        rest = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        if rest not in ("", "\r"):
            self._data, self._event = [], ""
            return None
        return self._dispatch()

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None  # id and retry: reconnection is not how edge recovers

    def _dispatch(self) -> SSEEvent | None:
        data, name = self._data, self._event or "message"
        self._data, self._event = [], ""
        return SSEEvent(name, "\n".join(data)) if data else None


@dataclass
class StreamState:
    """What a provider has reported so far for one request."""

    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done: bool = False          # terminal event seen: stop reading
    eof_ok: bool = False        # the stream may now end by closing (Gemini has no end marker)
    trim_leading: bool = False  # drop leading whitespace the client already has (Anthropic prefix)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds or an HTTP-date."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def classify_status(kind_status: int, message: str, *, retry_after: float | None = None,
                    status: int | None = None) -> BackendError:
    """The one table from an HTTP status to an edge error. `kind_status` decides the
    class (a provider may say "bad key" with a 400); `status` is what the wire said."""
    status = kind_status if status is None else status
    if kind_status < 400 or kind_status in _MISCONFIGURED:
        return BackendMisconfigured(message, status=status)
    if kind_status in _RETRYABLE or kind_status >= 500:
        return RetryableBackendError(message, retry_after=retry_after, status=status)
    return BackendRejectedRequest(message, status=status)


# How a continuation is asked for where the provider cannot prefill: the partial answer
# as the assistant's turn, then this. OverlapTrimmer drops whatever the model repeats.
CONTINUE_INSTRUCTION = ("Your previous answer was cut off. Continue it from exactly where it stops, character for "
                        "character, without repeating any of it and without any preamble.")


class _TextFilter:
    """The continuation trimmer, then the stop cutter: either may be absent."""

    def __init__(self, trimmer: OverlapTrimmer | None, cutter: StopCutter | None) -> None:
        self.trimmer, self.cutter = trimmer, cutter

    @property
    def stopped(self) -> bool:
        return self.cutter is not None and self.cutter.stopped

    def feed(self, text: str) -> str:
        if self.trimmer is not None:
            text = self.trimmer.feed(text)
        return self.cutter.feed(text) if self.cutter is not None and text else text

    def flush(self) -> str:
        text = self.trimmer.flush() if self.trimmer is not None else ""
        if self.cutter is None:
            return text
        text = self.cutter.feed(text) if text else ""
        return text + self.cutter.flush()


class RemoteBackend(Backend):
    """A model behind an HTTP API. Subclasses set `kind` and `default_base_url` and
    implement the request/response hooks at the bottom."""

    kind = "remote"
    default_base_url = ""

    def __init__(self, name: str, *, base_url: str | None = None, model: str, api_key: str | None = None,
                 timeouts: Timeouts = Timeouts(), transport: httpx.AsyncBaseTransport | None = None,
                 headers: dict[str, str] | None = None, continuation: str = "auto",
                 api_version: str = "", thinking_budget: int | None = None, official: bool | None = None) -> None:
        """`continuation`: how a partial answer is continued here: "prefill" (a final
        assistant turn), "instruction", or "auto" (the capabilities table's choice).
        `official`: the provider's own rules apply (None: at its public address only).
        `api_version` (Anthropic) and `thinking_budget` (Gemini) are read by those adapters."""
        self.name = name
        self.model = model
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.api_version = api_version
        self.thinking_budget = thinking_budget
        self._official = official
        self.caps = capabilities(self.kind, model, official=self.official, api_version=api_version)
        self.prefill = continuation == "prefill" or (continuation == "auto" and self.caps.prefill)
        self.timeouts = timeouts
        self._api_key = api_key or None
        self._transport = transport
        self._extra_headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r})"

    @property
    def official(self) -> bool:
        """The provider's own API (not a compatible server at another address)."""
        if self._official is not None:
            return self._official
        return self.base_url == self.default_base_url.rstrip("/")

    def describe(self) -> ModelDescription:
        return ModelDescription(name=self.name, backend=self.kind, path=self.model)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # one pooled client per backend: connections are reused
            t = self.timeouts
            self._client = httpx.AsyncClient(
                transport=self._transport, headers={**self._auth_headers(), **self._extra_headers},
                # Backstops only: the asyncio limits in _within are the precise ones.
                timeout=httpx.Timeout(connect=t.connect_s, read=max(t.first_byte_s, t.idle_s),
                                      write=t.first_byte_s, pool=t.connect_s))
        return self._client

    # -- the attempt ----------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        overall = self.timeouts.total_s
        remaining = request.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise RetryableBackendError(self._msg("deadline already passed; request not sent"))
            overall = min(overall, remaining)
        start = loop.time()
        end = start + overall
        sent, text_filter = self._adapt(request)
        url, params, body = self._request(sent)
        req = self._build("POST", url, params=params, json=body,
                          headers={"accept": "text/event-stream" if request.stream else "application/json"})
        first_byte = start + self.timeouts.first_byte_s
        response = await self._within(self._http().send(req, stream=True), first_byte, "first byte", end)
        events = self._sse(response)
        try:
            if not response.is_success:
                raise await self._status_error(response, end)
            state = self._new_state(sent)
            async for text in self._texts(response, events, state, sent, first_byte, end):
                text = text_filter.feed(text)
                if text:
                    yield Chunk(text=text)
                if text_filter.stopped:
                    state.finish_reason = "stop"  # a stop sequence edge applies itself
                    break
            text = text_filter.flush()
            if text:
                yield Chunk(text=text)
            yield Chunk(finish_reason=state.finish_reason or "stop", prompt_tokens=state.prompt_tokens,
                        completion_tokens=state.completion_tokens)
        finally:
            await events.aclose()
            await response.aclose()

    def _adapt(self, request: GenerationRequest) -> tuple[GenerationRequest, _TextFilter]:
        """What this provider is sent for `request`, and the filter its answer passes through:
        a continuation it cannot prefill is asked for by instruction (and trimmed of what
        it repeats); stop sequences over its limit are cut here."""
        partial = request.assistant_prefix
        trimmer = None
        if partial and not self.prefill:
            trimmer = OverlapTrimmer(partial)
            messages = (*request.messages, Message("assistant", partial), Message("user", CONTINUE_INSTRUCTION))
            request = replace(request, messages=messages, assistant_prefix="")
        stops = request.params.stop
        limit = self.caps.max_stop
        cutter = None
        if limit is not None and len(stops) > limit:
            cutter = StopCutter(stops)
            request = replace(request, params=replace(request.params, stop=stops[:limit]))
        return request, _TextFilter(trimmer, cutter)

    async def _texts(self, response: httpx.Response, events: AsyncIterator[SSEEvent], state: StreamState,
                     request: GenerationRequest, first_byte: float, end: float) -> AsyncIterator[str]:
        """The answer's text as the provider sends it, filling `state` on the way."""
        loop = asyncio.get_running_loop()
        if not request.stream:
            raw = await self._within(response.aread(), loop.time() + self.timeouts.idle_s, "idle", end)
            text = self._guard(lambda: self._parse_unary(state, json.loads(raw)))
            if text:
                yield text
            return
        step, label = first_byte, "first byte"
        while not state.done:
            try:
                event = await self._within(anext(events), step, label, end)
            except StopAsyncIteration:
                if state.eof_ok:
                    break
                raise RetryableBackendError(self._msg("stream ended before its terminal event")) from None
            text = self._guard(lambda: self._on_event(state, event))  # noqa: B023 - called at once
            if text:
                yield text
            step, label = loop.time() + self.timeouts.idle_s, "idle"
        if state.done:
            await self._drain(events, loop.time() + self.timeouts.idle_s)

    async def _drain(self, events: AsyncIterator[SSEEvent], until: float) -> None:
        """Read what follows the terminal event (the chunked body's end), so the pooled
        connection can be reused: a response closed before its end closes its connection,
        and the next request pays for a new one. A server that never ends the body costs
        at most the idle limit; the answer is complete either way."""
        try:
            async with asyncio.timeout_at(until):
                async for _ in events:
                    pass
        except (TimeoutError, httpx.HTTPError):
            pass

    async def probe(self, *, timeout_s: float | None = None, strict: bool = False) -> None:
        """Reachability for the network monitor: any answer below 500 except 401/403
        counts (even 404: something is there); otherwise the classified error. `strict`:
        only a 2xx counts (a backend out of rotation comes back only when it answers
        right). `timeout_s` bounds the wait (default: the first-byte limit)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + min(self.timeouts.first_byte_s, timeout_s or math.inf)
        req = self._build("GET", self._probe_url())
        response = await self._within(self._http().send(req, stream=True), end, "first byte", math.inf)
        try:
            code = response.status_code
            if code in (401, 403) or code >= 500 or (strict and not response.is_success):
                raise await self._status_error(response, end)
        finally:
            await response.aclose()

    async def _sse(self, response: httpx.Response) -> AsyncIterator[SSEEvent]:
        parser = SSEParser()
        async for piece in response.aiter_bytes():
            for event in parser.feed(piece):
                yield event
        last = parser.close()
        if last is not None:
            yield last

    async def _within(self, aw: Awaitable[T], step_end: float, label: str, end: float) -> T:
        """Await `aw` by the step's limit or the attempt's, whichever is sooner,
        converting expiry and httpx failures where they enter."""
        if end <= step_end:
            step_end, label = end, "overall"
        try:
            async with asyncio.timeout_at(step_end):
                return await aw
        except TimeoutError as exc:
            raise RetryableBackendError(self._msg(f"{self._limit_text(label)} timeout")) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, label) from exc

    def _limit_text(self, label: str) -> str:
        seconds = {"connect": self.timeouts.connect_s, "first byte": self.timeouts.first_byte_s,
                   "idle": self.timeouts.idle_s}.get(label)
        return label if seconds is None else f"{label} ({seconds:g}s)"

    def _transport_error(self, exc: httpx.HTTPError, label: str) -> BackendError:
        if isinstance(exc, httpx.UnsupportedProtocol):
            return BackendMisconfigured(self._msg(f"unusable base URL ({type(exc).__name__})"))
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            label = "connect"
        if isinstance(exc, httpx.TimeoutException):
            return RetryableBackendError(self._msg(f"{self._limit_text(label)} timeout"))
        if isinstance(exc, httpx.ConnectError):
            return RetryableBackendError(self._msg(f"connect failed: {exc}"))
        return RetryableBackendError(self._msg(f"connection failed ({type(exc).__name__}): {exc}"))

    def _build(self, method: str, url: str, **kw: Any) -> httpx.Request:
        try:
            return self._http().build_request(method, url, **kw)
        except httpx.InvalidURL as exc:  # not an httpx.HTTPError
            raise BackendMisconfigured(self._msg("invalid base URL")) from exc

    def _guard(self, read: Callable[[], str]) -> str:
        try:
            return read()
        except _MALFORMED as exc:
            raise RetryableBackendError(self._msg(f"malformed response ({type(exc).__name__})")) from exc

    async def _status_error(self, response: httpx.Response, end: float) -> BackendError:
        loop = asyncio.get_running_loop()
        try:
            raw = await self._within(response.aread(), loop.time() + self.timeouts.idle_s, "idle", end)
        except BackendError:
            raw = b""  # the status alone still classifies the failure
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        status = response.status_code
        reason, kind_status, hint = self._error_detail(body, status)
        if not reason:
            reason = raw[:_MAX_REASON].decode("utf-8", "replace").strip() or response.reason_phrase
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return classify_status(kind_status, self._msg(f"HTTP {status}: {reason}"),
                               retry_after=hint if retry_after is None else retry_after, status=status)

    def _event_error(self, body: Any) -> BackendError:
        """An error reported inside a 200 stream: classified by the status or type it
        names; one that names neither is retryable."""
        reason, kind_status, hint = self._error_detail(body, 0)
        message = self._msg(f"error in stream: {reason or 'no reason given'}")
        if kind_status >= 400:
            return classify_status(kind_status, message, retry_after=hint, status=None)
        return RetryableBackendError(message, retry_after=hint)

    def _msg(self, text: str) -> str:
        text = f"{self.name} ({self.kind}): {text}"
        if self._api_key:  # before truncating, which could leave half a key behind
            text = text.replace(self._api_key, "***")
        return text if len(text) <= _MAX_REASON + 100 else text[:_MAX_REASON + 100] + "..."

    # -- provider hooks -------------------------------------------------------------

    def _new_state(self, request: GenerationRequest) -> StreamState:
        return StreamState()

    def _error_detail(self, body: Any, status: int) -> tuple[str, int, float | None]:
        """(reason, status that decides the class, retry-after hint) from an error body.
        This default reads the OpenAI shape and the common variants of compatible servers."""
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                code = err.get("code")
                if not status and isinstance(code, int):
                    status = code
                return str(err.get("message") or err.get("type") or ""), status, None
            for key in ("error", "message", "detail"):
                if isinstance(body.get(key), str):
                    return body[key], status or (body.get("code") if isinstance(body.get("code"), int) else 0), None
        return "", status, None

    @abc.abstractmethod
    def _auth_headers(self) -> dict[str, str]: ...

    @abc.abstractmethod
    def _probe_url(self) -> str: ...

    @abc.abstractmethod
    def _request(self, request: GenerationRequest) -> tuple[str, dict[str, str] | None, dict[str, Any]]:
        """(url, query params, JSON body) for this request."""

    @abc.abstractmethod
    def _parse_unary(self, state: StreamState, body: Any) -> str:
        """Fill `state` from a unary response; return the answer's text."""

    @abc.abstractmethod
    def _on_event(self, state: StreamState, event: SSEEvent) -> str:
        """Fill `state` from one stream event; return its new text ("" if none)."""
