"""The request path behind every front door, in five stages:

    admission   edge.pipeline.admission   serving gate, validation -> Request
    plan        edge.pipeline.planning    PII guard, cache lookup, decide, cost gate, signals, weigh -> Plan
    run         edge.pipeline.chain       backends in order: breakers, retries, continuation, cascade gate
    result      edge.pipeline.results     timings, trace, degraded, cost -> Result
    record      edge.pipeline.recording   ledger, metrics, one log line (answers and failures alike)

The doors (edge.server for gRPC, edge.http_api for HTTP) translate their wire format
into a Draft and call `Engine.serve`; they get text deltas, notices, then one Result,
or an EdgeError to map with edge.errors.wire_error. Start-up work lives in
edge.runtime.Runtime.

A request whose strategy is plan (the client's hint, or [plan] auto on a compound
request) goes to edge.pipeline.plan_execute instead of straight to `answer`: a remote
planner splits it, and each step comes back here through `Engine.answer` as a request
of its own (plan, run, result, record).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing

from edge.answer_cache import CachedAnswer
from edge.backends.base import ModelDescription
from edge.cache_policy import CachePolicy, pieces
from edge.calibration.shadow import Shadow
from edge.config import Settings
from edge.errors import BackendError
from edge.pipeline.admission import Admission, Arrival
from edge.pipeline.chain import Served, run_chain
from edge.pipeline.plan_call import PlannerCall
from edge.pipeline.plan_execute import PlanExecutor
from edge.pipeline.planning import Plan, Planner
from edge.privacy import StreamRestorer
from edge.pipeline.recording import Recorder
from edge.pipeline.results import Clocking, cache_fallback_info, explain, timings
from edge.runtime import Injected, Runtime
from edge.snapshot import Snapshot
from edge.tracing import NOOP, Span
from edge.types import Attempt, Notice, Outcome, Reason, Request, Result, Tier, Timings
from edge.validation import Draft

__all__ = ["Engine"]

Event = str | Notice | Result


class Engine:
    def __init__(self, settings: Settings, injected: Injected = Injected(), *,
                 state: Callable[[], str] = lambda: "serving") -> None:
        """`state()` is the daemon's lifecycle state; admission refuses unless it is 'serving'."""
        self.settings = settings
        self.runtime = rt = Runtime(settings, injected)
        self.admission = Admission(settings.limits, state)
        self.planner = Planner(settings, local=rt.local, remotes=rt.remotes, default_model=rt.default_model,
                               cost_gate=rt.cost_gate, estimates=rt.estimates, load=rt.load)
        self.planner.classifier = rt.classifier
        self.recorder = Recorder(settings, rt.ledger, rt.metrics)
        self.plans = PlanExecutor(settings, PlannerCall(settings, self.planner, rt.cost_gate, self.recorder),
                                  self.answer, self.recorder)
        self._rng = injected.rng
        self.shadow: Shadow | None = None  # set by start() when the teacher is on and shadow_rate > 0

    @property
    def default_model(self) -> str:
        return self.runtime.default_model

    @property
    def metrics(self):  # type: ignore[no-untyped-def]
        return self.runtime.metrics

    async def start(self) -> None:
        await self.runtime.start()
        self.planner.classifier = self.runtime.classifier
        self.planner.cache = self.runtime.cache
        self.planner.teacher = self.runtime.teacher
        if self.runtime.teacher is not None and self.settings.calibration.shadow_rate > 0:
            self.shadow = Shadow(self.settings, self.runtime.teacher, self.recorder, self.runtime.cost_gate,
                                 **({"rng": self._rng} if self._rng is not None else {}))
            shadow = self.shadow
            self.runtime.shadow_samples = lambda: shadow.started_total

    async def close_shadows(self, *, wait: bool = False) -> None:
        """Drop the shadow samples in flight (wait=True: let them finish first)."""
        if self.shadow is not None:
            await (self.shadow.drain() if wait else self.shadow.close())

    async def close(self) -> None:
        await self.close_shadows()
        await asyncio.to_thread(self.recorder.close)
        await self.runtime.close()

    def snapshot(self, *, budgets: bool = True) -> Snapshot:
        return self.runtime.snapshot(budgets=budgets)

    def describe(self) -> list[tuple[ModelDescription, str]]:
        return [(m.describe(), m.state) for m in self.runtime.local.values()]

    def reject(self, request_id: str, exc: BaseException, started: float, door: str) -> None:
        """Record a request a door refused before it could be read (a bad body)."""
        self.recorder.failure(request_id, exc, started, door)

    async def serve(self, draft: Draft, arrival: Arrival) -> AsyncIterator[Event]:
        """Yield text deltas (and notices) as they come, then one Result. Every ending is
        recorded: the answer, a failure (then re-raised for the door to map), a cancel."""
        started = time.monotonic()
        try:
            req = self.admission.admit(draft, arrival)
        except Exception as exc:
            self.recorder.failure(arrival.request_id, exc, started, arrival.door,
                                  client=arrival.tenant or arrival.peer)
            raise
        why = self.plans.wanted(req)
        events = self.plans.serve(req, arrival, why) if why is not None else self.answer(req, arrival)
        async with aclosing(events):  # a client gone mid-stream closes whatever runs below now
            async for event in events:
                yield event

    async def answer(self, req: Request, arrival: Arrival, *, prelude: Sequence[Reason] = (),
                     degraded: bool = False,
                     on_route: Callable[[Plan | CachedAnswer], Awaitable[None]] | None = None
                     ) -> AsyncIterator[Event]:
        """One admitted request down the direct path: plan, run the chain, result, record.
        `prelude` goes first in the trace (and `degraded` marks the answer), for a plan that
        fell back to answering directly; `on_route` hears the routing, and is awaited before
        anything runs (a plan's step waits there for its turn at the local model)."""
        run = _Run(self, arrival, req, prelude, degraded)
        try:
            planned = await run.plan()
            if on_route is not None:
                await on_route(planned)
                run.started = time.monotonic()  # a plan's step may have waited its turn: timed from now
            if isinstance(planned, CachedAnswer):
                for piece in run.cached_pieces(planned):
                    yield piece
                yield await run.cached_result(planned)
                return
            plan = planned
            outbound = plan.redaction.outbound if plan.redaction is not None else None
            async for event in run_chain(run.req.generation, plan.chain, self.settings.resilience, plan.skipped,
                                         plan.gate, outbound=outbound, span=run.span):
                out = run.take(event)
                if out is not None:
                    yield out
            if (tail := run.flush()) is not None:
                yield tail
            yield await run.finish(plan)
        except (asyncio.CancelledError, GeneratorExit) as exc:
            run.cancelled(exc)
            raise
        except Exception as exc:
            run.failed(exc)
            raise


class _Run:
    """One request in progress: its clocks, span and text so far; the small steps of serve()."""

    def __init__(self, engine: Engine, arrival: Arrival, req: Request, prelude: Sequence[Reason] = (),
                 degraded: bool = False) -> None:
        self.engine, self.arrival, self.req = engine, arrival, req
        self.prelude, self.force_degraded = list(prelude), degraded
        self.started = time.monotonic()
        self.first_at: float | None = None
        self.span: Span = NOOP
        self.restorer: StreamRestorer | None = None
        self.parts: list[str] = []
        self.notices: list[Reason] = []
        self.served: Served | None = None
        self.done = False

    # -- the plan ----------------------------------------------------------------------------

    async def plan(self) -> Plan | CachedAnswer:
        e, req = self.engine, self.req
        self.span = e.runtime.tracer.start("edge.request", request_id=req.request_id, stream=req.generation.stream)
        planned = await e.planner.plan(req, self.span)
        self.restorer = planned.redaction.restorer if isinstance(planned, Plan) and planned.redaction else None
        return planned

    # -- the chain's events --------------------------------------------------------------------

    def take(self, event: str | Notice | Served) -> str | Notice | None:
        """What the client gets of one chain event (None: nothing yet)."""
        if isinstance(event, str):
            if self.restorer is not None:
                event = self.restorer.feed(event)
                if not event:
                    return None  # maybe half a placeholder: held until it is whole
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.parts.append(event)
            return event
        if isinstance(event, Notice):
            self.notices.append(event.reason)
            return event
        self.served = event
        return None

    def flush(self) -> str | None:
        if self.restorer is None or not (tail := self.restorer.flush()):
            return None
        self.first_at = self.first_at or time.monotonic()
        self.parts.append(tail)
        return tail

    # -- the result ----------------------------------------------------------------------------

    async def finish(self, plan: Plan) -> Result:
        e, served = self.engine, self.served
        if served is None:  # run_chain ends with Served or raises; this would be a bug
            raise BackendError("the chain ended without an answer")
        ended = time.monotonic()
        clocking = Clocking(self.started, self.first_at or ended, ended)
        final, cand = served.final, served.candidate
        trace, degraded = explain(plan, served, self.notices, e.settings)
        trace, degraded = self.prelude + trace, degraded or self.force_degraded
        cache_info = cache_fallback_info(plan, served)
        if cand.remote is None and cache_info is None:
            self._observe_local_rates(clocking)
        cost = self._cost(cache_info is not None, ended)
        result = Result(request_id=plan.request.request_id, text="".join(self.parts),
                        finish_reason=final.finish_reason or "",
                        prompt_tokens=final.prompt_tokens + sum(s.prompt_tokens for s in served.spent),
                        completion_tokens=final.completion_tokens + sum(s.completion_tokens for s in served.spent),
                        tier=cand.tier, backend=cand.name,
                        model=cand.model, timings=timings(clocking, served), trace=trace, degraded=degraded,
                        attempts=list(served.attempts), cost_usd=cost, cache=cache_info)
        self._store(plan, result)
        fleet = e.runtime.cost_gate.fleet
        if fleet is not None:  # the lease pays what was spent remotely (the hold is released either way)
            fleet.settle(plan.request.request_id, cost if cand.remote is not None or served.spent else 0.0)
        if e.runtime.teacher is not None:
            e.runtime.teacher.observe(plan, served, result.text)
        recorded = await self._record(result, pii_found=bool(plan.pii))
        if e.shadow is not None:
            e.shadow.maybe_sample(plan, served, result)  # starts after the client has its answer
        return recorded

    def _observe_local_rates(self, c: Clocking) -> None:
        """The local model's measured rates feed the latency predictor."""
        assert self.served is not None
        final, model = self.served.final, self.served.candidate.model
        estimates = self.engine.runtime.estimates
        if model in estimates:
            estimates[model].observe(
                prompt_tokens=final.prompt_tokens, prompt_s=max(0.0, c.first_at - self.started - final.queue_wait_s),
                completion_tokens=final.completion_tokens, decode_s=c.ended - c.first_at,
                service_s=c.ended - self.started - final.queue_wait_s)

    def _cost(self, cached: bool, ended: float) -> float:
        """What the answer cost; a stream that failed over mid-answer counts every backend
        that sent part of it."""
        assert self.served is not None
        served, cost_of = self.served, self.engine.runtime.cost_gate.cost_of
        final = served.final
        cost = 0.0 if cached else cost_of(served.candidate, final.prompt_tokens, final.completion_tokens,
                                          ended - self.started)
        return cost + sum(cost_of(s.candidate, s.prompt_tokens, s.completion_tokens, 0.0) for s in served.spent)

    def _store(self, plan: Plan, result: Result) -> None:
        cache = self.engine.runtime.cache
        if (cache is None or result.cache is not None or result.degraded or not result.text
                or result.finish_reason not in ("stop", "length")):
            return
        cache.store(plan.lookup, CachedAnswer(
            text=result.text, finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, tier=str(result.tier), backend=result.backend,
            model=result.model, created=time.time()), shareable=not plan.pii)  # redacted PII stays on the box

    def cached_pieces(self, hit: CachedAnswer) -> Iterator[str]:
        """A cache hit played back: word by word to a stream, whole to a unary call."""
        for piece in pieces(hit.text) if self.arrival.stream else [hit.text]:
            self.first_at = self.first_at or time.monotonic()
            yield piece

    async def cached_result(self, hit: CachedAnswer) -> Result:
        ended = time.monotonic()
        info = CachePolicy.hit_info(hit)
        how = "exact match" if hit.kind == "exact" else \
            f"semantic match (cosine {hit.similarity:.3f} >= {self.engine.settings.cache.threshold})"
        trace = [*self.prelude, Reason("CACHE_HIT", f"{how} of an answer by {hit.tier}/{hit.backend} ({hit.model}) "
                                                    f"{info.age_s:.0f}s ago")]
        total_ms = (ended - self.started) * 1000
        result = Result(request_id=self.req.request_id, text=hit.text, finish_reason=hit.finish_reason,
                        prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, tier=Tier.LOCAL,
                        backend="cache", model=hit.model,
                        timings=Timings(time_to_first_token_ms=((self.first_at or ended) - self.started) * 1000,
                                        total_ms=total_ms),
                        trace=trace, attempts=[Attempt("cache", Tier.LOCAL, Outcome.OK, total_ms)], cache=info,
                        degraded=self.force_degraded)
        return await self._record(result, pii_found=False)

    async def _record(self, result: Result, *, pii_found: bool) -> Result:
        await self.engine.recorder.answer(result, self.req, pii_found=pii_found, peer=self.arrival.peer)
        self.span.set(tier=str(result.tier), backend=result.backend, degraded=result.degraded,
                      prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                      reasons=[r.code for r in result.trace])
        self.span.end()
        self.done = True
        return result

    # -- other endings ---------------------------------------------------------------------------

    def cancelled(self, exc: BaseException) -> None:
        if not self.done:
            self.engine.recorder.cancelled(self.arrival.request_id, self.arrival.door)
            self.span.end(exc)

    def failed(self, exc: Exception) -> None:
        self.engine.recorder.failure(self.arrival.request_id, exc, self.started, self.arrival.door,
                                     client=self.arrival.tenant or self.arrival.peer)
        self.span.end(exc)
