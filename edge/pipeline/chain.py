"""Run a request down its chain of candidates until one answers.

Retry at most `max_retries` times on the same backend (jittered backoff, at least
the provider's Retry-After, only while the deadline allows), then the next backend.
Breakers skip dead backends at no cost; configuration errors take a backend out
of rotation; the local model, last in every chain, has no breaker. If a stream
breaks after text reached the client, the next backend continues from that text,
and a notice says so: a stream never ends as a success with a truncated answer.
With a cascade gate, the first candidate's text is held until the gate's verdict.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from edge.backends.base import Chunk, GenerationRequest
from edge.config import ResilienceSettings
from edge.errors import (
    BackendMisconfigured,
    BackendRejectedRequest,
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    RetryableBackendError,
    Unavailable,
)
from edge.pipeline.candidates import Candidate, RemoteState
from edge.pipeline.cascade import CascadeGate, Verdict
from edge.resilience import BreakerState, retry_delay
from edge.tracing import NOOP, Span
from edge.types import Attempt, Notice, Outcome, Reason

__all__ = ["Served", "Spent", "run_chain", "summary"]

log = logging.getLogger("edge.failover")

# A retry is only worth it when this much of the deadline is left after the backoff.
MIN_ATTEMPT_S = 0.05

Outbound = Callable[[GenerationRequest], GenerationRequest]


@dataclass(frozen=True)
class Spent:
    """What a try that failed mid-stream consumed: its text reached the client, and its
    provider bills it (prompt tokens estimated: a broken stream reports no usage)."""

    candidate: Candidate
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Served:
    """How the chain ended: who answered, its final chunk, every attempt on the way."""

    candidate: Candidate
    final: Chunk
    attempts: list[Attempt] = field(default_factory=list)
    spent: list[Spent] = field(default_factory=list)  # earlier tries whose text the answer continues
    # The provider reported no token usage (some OpenAI-compatible servers omit it
    # from streams): the counts are estimates, see _estimate_usage.
    usage_estimated: bool = False
    verdict: Verdict | None = None  # the cascade gate's, when one judged the first candidate
    abandoned: str = ""             # the local text the gate held back and dropped when it escalated


@dataclass
class _Try:
    """One attempt at one candidate, as it goes."""

    gated: bool
    started: float = field(default_factory=time.monotonic)
    held: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    final: Chunk | None = None
    deltas: int = 0
    tokens: int = 0  # completion tokens passed on (the backend's count where it gives one, else deltas)

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    @property
    def escalated(self) -> bool:
        return self.verdict is not None and self.verdict.escalate


@dataclass(frozen=True)
class _Next:
    """What a failed try leads to: retry the same candidate after `delay`, or move on."""

    retry: bool
    delay: float = 0.0
    notice: Notice | None = None


def run_chain(request: GenerationRequest, chain: Sequence[Candidate], settings: ResilienceSettings,
              skipped: Sequence[Attempt] = (), gate: CascadeGate | None = None, *,
              outbound: Outbound | None = None, span: Span = NOOP) -> AsyncIterator[str | Notice | Served]:
    """Yield text deltas (and notices) from the first backend that answers, then Served.

    Raises InvalidArgument when a provider rejects the request (HTTP 400), the local
    backend's own errors (queue full, deadline) when the local model was reached, and
    Unavailable when nothing in the chain could answer. `skipped` are candidates the
    plan ruled out already (with why); `outbound` rewrites what a remote candidate
    receives (the privacy guard's redaction), continuation text included.
    """
    return _ChainRun(request, chain, settings, list(skipped), gate, outbound, span).events()


class _ChainRun:
    def __init__(self, request: GenerationRequest, chain: Sequence[Candidate], settings: ResilienceSettings,
                 attempts: list[Attempt], gate: CascadeGate | None, outbound: Outbound | None, span: Span) -> None:
        self.request, self.chain, self.settings = request, chain, settings
        self.attempts = attempts
        self.gate, self.outbound, self.span = gate, outbound, span
        self.sent = ""  # text the client has: a later candidate continues from it
        self.spent: list[Spent] = []  # tries that failed after sending part of it
        self.verdict: Verdict | None = None
        self.abandoned = ""

    async def events(self) -> AsyncIterator[str | Notice | Served]:
        for index, cand in enumerate(self.chain):
            if self._skip(cand):
                continue
            tries = 0
            while True:
                req = self._attempt_request(index, cand)
                t = _Try(gated=self._gated(index, cand))
                _begin(cand.remote)
                with _attempt_span(self.span, cand, tries, self.attempts):
                    try:
                        gen = cand.backend.generate(replace(req, confidence=True) if t.gated else req)
                        async for chunk in gen:
                            if (text := self._take(t, chunk)) is not None:
                                yield text
                            elif t.escalated:
                                await gen.aclose()  # stops the local model at its next token
                                break
                        ending = self._settle(index, cand, t)
                    except (RetryableBackendError, BackendMisconfigured, Overloaded, BackendRejectedRequest) as exc:
                        ending = self._failed(index, cand, t, exc, tries, req)
                    except BaseException:
                        _release_probe(cand.remote)
                        raise
                    finally:
                        _end(cand.remote)
                if isinstance(ending, Served):
                    yield ending
                    return
                if ending.notice is not None:
                    yield ending.notice
                if not ending.retry:
                    break
                tries += 1
                await asyncio.sleep(ending.delay)
        raise Unavailable("no backend could serve the request: " + summary(self.attempts))

    def _gated(self, index: int, cand: Candidate) -> bool:
        """The cascade judges the first candidate, the local model, when something follows it."""
        return self.gate is not None and index == 0 and cand.remote is None and index < len(self.chain) - 1

    # -- before a try ---------------------------------------------------------------------

    def _skip(self, cand: Candidate) -> bool:
        """A remote candidate that cannot be tried now costs nothing: record why and move on."""
        st = cand.remote
        if st is None:
            return False
        if st.out_of_rotation:
            self.attempts.append(Attempt(cand.name, cand.tier, Outcome.OUT_OF_ROTATION, 0.0, st.out_of_rotation))
            return True
        if not st.breaker.allow():
            self.attempts.append(Attempt(cand.name, cand.tier, Outcome.BREAKER_OPEN, 0.0,
                                         f"breaker open, next probe in {st.breaker.retry_in():.1f}s"))
            return True
        return False

    def _attempt_request(self, index: int, cand: Candidate) -> GenerationRequest:
        """What this try sends: the text so far to continue, redacted for a remote tier,
        streamed upstream, with time kept back for whatever follows in the chain."""
        request = self.request
        remaining = request.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline passed before a backend could answer: " + summary(self.attempts))
        if self.sent:  # continue the answer, for what is left of max_tokens
            left = max(1, request.params.max_tokens - sum(x.completion_tokens for x in self.spent))
            req = replace(request, assistant_prefix=request.assistant_prefix + self.sent,
                          params=replace(request.params, max_tokens=left))
        else:
            req = request
        st = cand.remote
        if st is not None and self.outbound is not None:
            req = self.outbound(req)
        if st is not None and st.stream_upstream and not req.stream:
            req = replace(req, stream=True)
        if index < len(self.chain) - 1 and remaining is not None and request.deadline is not None:
            # Keep time back so whatever comes next (the local model) can still answer.
            req = replace(req, deadline=request.deadline - min(self.settings.fallback_reserve_s, remaining / 2))
        return req

    # -- during a try ---------------------------------------------------------------------

    def _take(self, t: _Try, chunk: Chunk) -> str | None:
        """The text to pass on for one chunk (None: nothing now). With the gate, text is
        held until its verdict, then released all at once, or (escalate) dropped."""
        if t.gated:
            t.held.append(chunk.text)
            verdict = self.gate.judge(chunk) if self.gate is not None else Verdict(False, "")
            if verdict is None:
                return None
            t.gated = False
            t.verdict = self.verdict = verdict
            if verdict.escalate:
                return None
            chunk = replace(chunk, text="".join(t.held))
        if chunk.finish_reason is not None:
            t.final = chunk
        if not chunk.text:
            return None
        t.deltas += 1
        t.tokens = max(t.tokens + 1, chunk.completion_tokens)
        self.sent += chunk.text
        return chunk.text

    def _settle(self, index: int, cand: Candidate, t: _Try) -> Served | _Next:
        """A try whose stream ended: served, escalated by the gate, blocked by its provider
        (with on_content_filter = 'fallback' and someone after it), or cut short."""
        if t.escalated:
            return _Next(retry=False, notice=self._escalated(cand, t))
        if t.final is None:
            raise RetryableBackendError(f"{cand.name} ended without finishing the answer")
        if (t.final.finish_reason == "content_filter" and self.settings.on_content_filter == "fallback"
                and cand.remote is not None and index < len(self.chain) - 1):
            cand.remote.breaker.record_success()  # it answered: the content was the matter
            why = f"{cand.name}'s provider blocked the answer (finish reason content_filter)"
            self.attempts.append(Attempt(cand.name, cand.tier, Outcome.CONTENT_FILTER, t.elapsed_ms(), why))
            return _Next(retry=False, notice=Notice(Reason("CONTENT_FILTER_FALLBACK", f"{why}; the next backend "
                                                                                     "answers")))
        return self._served(cand, t, t.final)

    def _escalated(self, cand: Candidate, t: _Try) -> Notice:
        why = t.verdict.why if t.verdict is not None else ""
        self.abandoned = "".join(t.held)  # what the teacher compares the remote answer with
        self.attempts.append(Attempt(cand.name, cand.tier, Outcome.LOW_CONFIDENCE, t.elapsed_ms(), why))
        return Notice(Reason("CASCADE_ESCALATED", f"{cand.name}: {why}"))

    # -- after a try -----------------------------------------------------------------------

    def _failed(self, index: int, cand: Candidate, t: _Try, exc: Exception, tries: int,
                sent: GenerationRequest) -> _Next:
        """Classify a failed try: raise what the client must hear, else retry or move on."""
        st = cand.remote
        if isinstance(exc, BackendRejectedRequest):
            if st is not None:
                st.breaker.record_success()  # it answered; the request was at fault
            raise InvalidArgument("messages", f"{cand.name} rejected the request: {exc}") from exc
        if isinstance(exc, Overloaded):
            if st is not None or index == len(self.chain) - 1:
                raise exc
            # The local model chosen first is busy: the remote tiers after it take over.
            self.attempts.append(Attempt(cand.name, cand.tier, Outcome.QUEUE_FULL, t.elapsed_ms(), str(exc)))
            return _Next(retry=False)
        if st is None:
            raise exc  # the local model's own failure: nothing after it to fail over to
        st.failures_total += 1
        if isinstance(exc, BackendMisconfigured):
            st.take_out(str(exc))
            self.attempts.append(Attempt(cand.name, cand.tier, Outcome.MISCONFIGURED, t.elapsed_ms(), str(exc)))
            log.error("backend taken out of rotation", extra={"backend": cand.name, "error": str(exc)})
            return _Next(retry=False)
        return self._retryable(cand, st, t, exc, tries, sent)  # type: ignore[arg-type]

    def _retryable(self, cand: Candidate, st: RemoteState, t: _Try, exc: RetryableBackendError,
                   tries: int, sent: GenerationRequest) -> _Next:
        """`sent` is the try's own request: its deadline keeps time back for what follows."""
        before = st.breaker.state
        st.breaker.record_failure()
        if st.breaker.state != before:
            st.changed()  # opened: the probe loop schedules its look from now
        self.attempts.append(Attempt(cand.name, cand.tier, Outcome.RETRYABLE_ERROR, t.elapsed_ms(), str(exc)))
        log.warning("backend attempt failed", extra={"request_id": self.request.request_id, "backend": cand.name,
                                                      "error": str(exc), "breaker": st.breaker.state})
        if t.deltas:
            # The client already has part of this answer: continue it elsewhere, don't restart,
            # and count what this try consumed.
            self.spent.append(Spent(cand, sent.approx_prompt_tokens(), t.tokens))
            return _Next(retry=False, notice=Notice(Reason(
                "FAILOVER_MID_STREAM", f"{cand.name} failed after sending part of the answer ({exc}); "
                                       "continuing on the next backend")))
        if tries + 1 > self.settings.max_retries or st.breaker.state != BreakerState.CLOSED:
            return _Next(retry=False)
        delay = retry_delay(tries + 1, self.settings, exc.retry_after)
        left = sent.remaining()
        if left is not None and delay + MIN_ATTEMPT_S >= left:
            self.attempts.append(Attempt(cand.name, cand.tier, Outcome.NO_TIME, 0.0,
                                         f"retry would wait {delay:.2f}s with {left:.2f}s left"))
            return _Next(retry=False)
        return _Next(retry=True, delay=delay)

    def _count_prompt_tokens(self) -> Callable[[GenerationRequest], int] | None:
        """The local model's prompt counter, when the chain has a local model that has one."""
        local = next((c for c in self.chain if c.remote is None and c.name == "local"), None)
        return getattr(local.backend, "count_prompt_tokens", None) if local is not None else None

    def _served(self, cand: Candidate, t: _Try, final: Chunk) -> Served:
        st = cand.remote
        if st is not None:
            st.breaker.record_success()
            st.latency_s.add(time.monotonic() - t.started)
        self.attempts.append(Attempt(cand.name, cand.tier, Outcome.OK, t.elapsed_ms()))
        estimated = st is not None and final.completion_tokens == 0 and t.deltas > 0
        if estimated:
            final = _estimate_usage(final, self.request, t.deltas, self._count_prompt_tokens())
        return Served(cand, final, self.attempts, spent=self.spent, usage_estimated=estimated, verdict=self.verdict,
                      abandoned=self.abandoned)


def _begin(st: RemoteState | None) -> None:
    if st is not None:
        st.outstanding += 1
        st.requests_total += 1


def _end(st: RemoteState | None) -> None:
    if st is not None:
        st.outstanding -= 1


def _release_probe(st: RemoteState | None) -> None:
    """A half-open probe that ended without a verdict (e.g. the client cancelled)."""
    if st is not None and st.breaker.state == BreakerState.HALF_OPEN:
        st.breaker.release_probe()


def _estimate_usage(final: Chunk, request: GenerationRequest, deltas: int,
                    count: Callable[[GenerationRequest], int] | None) -> Chunk:
    """One streamed delta per token (how OpenAI-compatible servers stream); the prompt
    counted through the local model's chat template and tokenizer when there is one
    (a template adds a system prompt and role markers that 4 characters a token miss),
    else about 4 characters a token: better than reporting nothing to budgets."""
    prompt = final.prompt_tokens
    if not prompt and count is not None:
        try:
            prompt = count(request)
        except Exception:  # noqa: BLE001 - an estimate that fails falls back to the rough one
            prompt = 0
    return replace(final, prompt_tokens=prompt or request.approx_prompt_tokens(), completion_tokens=deltas)


@contextmanager
def _attempt_span(parent: Span, cand: Candidate, retry: int, attempts: list[Attempt]) -> Iterator[None]:
    """One span per try, ended with the outcome the try recorded (or the error that left it)."""
    if parent is NOOP:
        yield
        return
    before = len(attempts)
    span = parent.child("edge.attempt", backend=cand.name, tier=str(cand.tier), retry=retry)
    try:
        yield
    except BaseException as exc:
        span.set(outcome=type(exc).__name__)
        span.end(exc)
        raise
    span.set(outcome=attempts[-1].outcome if len(attempts) > before else "ok")
    span.end()


def summary(attempts: Sequence[Attempt]) -> str:
    if not attempts:
        return "no backend was tried"
    return "; ".join(f"{a.backend}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts)
