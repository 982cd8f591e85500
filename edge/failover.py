"""Run a request down a chain of backends until one answers.

Retry at most `max_retries` times on the same backend (jittered backoff, at least
the provider's Retry-After, only while the deadline allows), then the next backend.
Breakers skip dead backends at no cost; configuration errors take a backend out
of rotation; the local model, last in every chain, has no breaker. If a stream
breaks after text reached the client, the next backend continues from that text,
and a notice says so: a stream never ends as a success with a truncated answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from edge.backends.base import Backend, Chunk, GenerationRequest
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
from edge.resilience import BreakerState, CircuitBreaker, retry_delay
from edge.router.estimates import Ema
from edge.router import Reason
from edge.tracing import NOOP, Span

__all__ = ["Attempt", "Candidate", "Notice", "RemoteState", "Served", "run_chain", "probe_loop"]

log = logging.getLogger("edge.failover")

# A retry is only worth it when this much of the deadline is left after the backoff.
MIN_ATTEMPT_S = 0.05


@dataclass
class RemoteState:
    """Runtime state of one remote backend: its breaker, load and health."""

    backend: Backend
    tier: int
    breaker: CircuitBreaker
    outstanding: int = 0
    out_of_rotation: str = ""
    # Use the provider's streaming API even when the client asked for one whole
    # answer: first-byte and idle limits then watch the generation itself, where
    # a unary call only shows its first byte once the whole answer is done.
    stream_upstream: bool = True
    latency_s: Ema = field(default_factory=Ema)  # successful attempts: what the policy predicts with
    requests_total: int = 0
    failures_total: int = 0


@dataclass(frozen=True)
class Candidate:
    name: str
    tier: int
    backend: Backend
    model: str
    remote: RemoteState | None = None


@dataclass(frozen=True)
class Attempt:
    backend: str
    tier: int
    # ok | retryable_error | misconfigured | breaker_open | out_of_rotation | no_time | over_budget
    # | over_cost_ceiling | queue_full | low_confidence
    outcome: str
    latency_ms: float
    detail: str = ""


@dataclass(frozen=True)
class Notice:
    """Something the client should know mid-stream (a failover)."""

    reason: Reason


@dataclass
class Served:
    candidate: Candidate
    final: Chunk
    attempts: list[Attempt] = field(default_factory=list)
    # The provider reported no token usage (some OpenAI-compatible servers omit it
    # from streams): the counts are estimates, see _estimate_usage.
    usage_estimated: bool = False


def _estimate_usage(final: Chunk, request: GenerationRequest, deltas: int) -> Chunk:
    """One streamed delta per token (how OpenAI-compatible servers stream), and
    about 4 characters per prompt token: better than reporting nothing to budgets."""
    prompt = final.prompt_tokens or request.approx_prompt_tokens()
    return replace(final, prompt_tokens=prompt, completion_tokens=deltas)


def _elapsed_ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


Gate = Callable[[Chunk], "tuple[bool, str] | None"]


async def run_chain(request: GenerationRequest, chain: list[Candidate], settings: ResilienceSettings,
                    skipped: list[Attempt] | None = None, gate: Gate | None = None, *,
                    outbound: Callable[[GenerationRequest], GenerationRequest] | None = None,
                    span: Span = NOOP) -> AsyncIterator[str | Notice | Served]:
    """Yield text deltas (and notices) from the first backend that answers, then Served.

    Raises InvalidArgument when a provider rejects the request (HTTP 400), the local
    backend's own errors (queue full, deadline) when the local model was reached, and
    Unavailable when nothing in the chain could answer.

    `gate` (the cascade) judges the first candidate when it is the local model and
    something follows it: its text is held back until gate(chunk) returns a verdict
    (ok, why); a bad verdict abandons the local answer, unseen by the client, and the
    next candidate answers.

    `outbound` rewrites what a remote candidate receives (the privacy guard's redaction),
    continuation text included. Each try is a child span of `span`.
    """
    attempts: list[Attempt] = list(skipped or ())  # candidates the policy already ruled out, with why
    sent = ""
    for index, cand in enumerate(chain):
        is_last = index == len(chain) - 1
        st = cand.remote
        if st is not None:
            if st.out_of_rotation:
                attempts.append(Attempt(cand.name, cand.tier, "out_of_rotation", 0.0, st.out_of_rotation))
                continue
            if not st.breaker.allow():
                attempts.append(Attempt(cand.name, cand.tier, "breaker_open", 0.0,
                                        f"breaker open, next probe in {st.breaker.retry_in():.1f}s"))
                continue
        tries = 0
        while True:
            t0 = time.monotonic()
            remaining = request.remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded("deadline passed before a backend could answer: " + _summary(attempts))
            attempt_req = replace(request, assistant_prefix=request.assistant_prefix + sent) if sent else request
            if st is not None and outbound is not None:
                attempt_req = outbound(attempt_req)
            if st is not None and st.stream_upstream and not attempt_req.stream:
                attempt_req = replace(attempt_req, stream=True)
            if not is_last and remaining is not None and request.deadline is not None:
                # Keep time back so whatever comes next (the local model) can still answer.
                attempt_req = replace(attempt_req, deadline=request.deadline - min(settings.fallback_reserve_s,
                                                                                   remaining / 2))
            streamed_here = False
            deltas_here = 0
            final: Chunk | None = None
            gated = gate is not None and index == 0 and st is None and not is_last
            held: list[str] = []
            rejected = ""
            if st is not None:
                st.outstanding += 1
                st.requests_total += 1
            with _attempt_span(span, cand, tries, attempts):
                try:
                    gen_stream = cand.backend.generate(replace(attempt_req, confidence=True) if gated else attempt_req)
                    async for chunk in gen_stream:
                        if gated:
                            held.append(chunk.text)
                            verdict = gate(chunk)  # type: ignore[misc]
                            if verdict is None:
                                continue
                            gated = False
                            ok, why = verdict
                            if not ok:
                                rejected = why
                                await gen_stream.aclose()  # stops the local model at its next token
                                break
                            chunk = replace(chunk, text="".join(held))
                        if chunk.text:
                            streamed_here = True
                            deltas_here += 1
                            sent += chunk.text
                            yield chunk.text
                        if chunk.finish_reason is not None:
                            final = chunk
                    if rejected:
                        attempts.append(Attempt(cand.name, cand.tier, "low_confidence", _elapsed_ms(t0), rejected))
                        yield Notice(Reason("CASCADE_ESCALATED", f"{cand.name}: {rejected}"))
                        break
                    if final is None:
                        raise RetryableBackendError(f"{cand.name} ended without finishing the answer")
                except RetryableBackendError as exc:
                    if st is None:
                        raise
                    st.failures_total += 1
                    st.breaker.record_failure()
                    attempts.append(Attempt(cand.name, cand.tier, "retryable_error", _elapsed_ms(t0), str(exc)))
                    log.warning("backend attempt failed", extra={"request_id": request.request_id, "backend": cand.name,
                                                                  "error": str(exc), "breaker": st.breaker.state})
                    if streamed_here:
                        # The client already has part of this answer: continue it elsewhere, don't restart.
                        yield Notice(Reason("FAILOVER_MID_STREAM", f"{cand.name} failed after sending part of the "
                                                                   f"answer ({exc}); continuing on the next backend"))
                        break
                    tries += 1
                    if tries > settings.max_retries or st.breaker.state != BreakerState.CLOSED:
                        break
                    delay = retry_delay(tries, settings, exc.retry_after)
                    left = attempt_req.remaining()
                    if left is not None and delay + MIN_ATTEMPT_S >= left:
                        attempts.append(Attempt(cand.name, cand.tier, "no_time", 0.0,
                                                f"retry would wait {delay:.2f}s with {left:.2f}s left"))
                        break
                    await asyncio.sleep(delay)
                    continue
                except BackendMisconfigured as exc:
                    assert st is not None
                    st.failures_total += 1
                    st.out_of_rotation = str(exc)
                    attempts.append(Attempt(cand.name, cand.tier, "misconfigured", _elapsed_ms(t0), str(exc)))
                    log.error("backend taken out of rotation", extra={"backend": cand.name, "error": str(exc)})
                    break
                except Overloaded as exc:
                    if st is not None or is_last:
                        raise
                    # The local model chosen first is busy: the remote tiers after it take over.
                    attempts.append(Attempt(cand.name, cand.tier, "queue_full", _elapsed_ms(t0), str(exc)))
                    break
                except BackendRejectedRequest as exc:
                    if st is not None:
                        st.breaker.record_success()  # it answered; the request was at fault
                    raise InvalidArgument("messages", f"{cand.name} rejected the request: {exc}") from exc
                except BaseException:
                    if st is not None and st.breaker.state == BreakerState.HALF_OPEN:
                        st.breaker.release_probe()
                    raise
                finally:
                    if st is not None:
                        st.outstanding -= 1
            if st is not None:
                st.breaker.record_success()
                st.latency_s.add(time.monotonic() - t0)
            attempts.append(Attempt(cand.name, cand.tier, "ok", _elapsed_ms(t0)))
            estimated = st is not None and final.completion_tokens == 0 and deltas_here > 0
            if estimated:
                final = _estimate_usage(final, request, deltas_here)
            yield Served(cand, final, attempts, usage_estimated=estimated)
            return
    raise Unavailable("no backend could serve the request: " + _summary(attempts))


@contextmanager
def _attempt_span(parent: Span, cand: Candidate, retry: int, attempts: list[Attempt]) -> Iterator[None]:
    """One span per try, ended with the outcome the try recorded (or the error that left it)."""
    if parent is NOOP:
        yield
        return
    before = len(attempts)
    span = parent.child("edge.attempt", backend=cand.name, tier=cand.tier, retry=retry)
    try:
        yield
    except BaseException as exc:
        span.set(outcome=type(exc).__name__)
        span.end(exc)
        raise
    # A success records its Attempt after this block; anything else recorded one inside it.
    span.set(outcome=attempts[-1].outcome if len(attempts) > before else "ok")
    span.end()


def _summary(attempts: list[Attempt]) -> str:
    if not attempts:
        return "no backend was tried"
    return "; ".join(f"{a.backend}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts)


async def probe_loop(states: list[RemoteState], interval_s: float) -> None:
    """While a backend's breaker is open, check it cheaply every `interval_s`; when it
    answers, let the next request through at once instead of waiting out the cooldown."""
    while True:
        await asyncio.sleep(interval_s)
        for st in states:
            if st.out_of_rotation or st.breaker.state != BreakerState.OPEN:
                continue
            try:
                await st.backend.probe()  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - a failed probe is the expected case while down
                log.debug("probe failed", extra={"backend": st.backend.name, "error": str(exc)})
                continue
            log.info("probe succeeded; backend back in rotation", extra={"backend": st.backend.name})
            st.breaker.reset_for_probe()
