"""Plan and execute: a remote planner splits a compound request into steps, each step is
routed on its own by the normal policy, and the answers are joined on the device.

    wanted     the client's strategy hint (plan / direct), or with [plan] auto the compound
               rule (edge.pipeline.plan_format.compound_questions: two or more questions)
    plan       the planner call (edge.pipeline.plan_call): the last user message only,
               through the PII guard; its reply parsed strictly
    steps      each step is a request of its own through `Engine.answer` (PII guard, cache,
               policy, cost gate, breakers, ledger: `<id>/1`, `<id>/2`, ...). The planner's
               verdict is the step's difficulty signal (edge.pipeline.planning: capable =
               the hardest; otherwise at most the cascade band, so the local model answers
               and the gate checks its confidence); cost, load, latency and PII weigh as
               for any request. A step carries the conversation's earlier messages, the
               private values restored on the device, and max_tokens / steps of the
               request's max_tokens; routed remote (or escalated there), it sends its
               self-contained ask alone: the conversation never leaves the device. All steps are routed at once; those routed remote run
               at once and overlap, those routed local first run one at a time in step
               order (each waits, after its routing, for the earlier steps to be done with
               the local model), so the plan's own steps never wait in the local queue,
               where they would count as load and push each other remote.
    compose    the answers joined in step order, "1. ...\\n2. ...", on the device (no model
               call): streamed to the client step by step as each is ready in order
    fallback   no plan (the planner down, a malformed plan, one over plan.max_steps): the
               request is answered directly, degraded, the reason first in its trace. A
               step that fails is asked again of the local model (preference local_only);
               if that fails too, the whole request is answered directly when the client
               has nothing of it yet, else the step's place says it has no answer (degraded).

The joined answer is recorded by a log line only: its planner call and steps have their
own ledger rows, so budgets and metrics never count it twice. Cancelling the request
cancels every step in flight (the local model stops at its next token, remote streams
are closed) and starts no other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from edge.backends.base import Message
from edge.config import Settings
from edge.errors import DeadlineExceeded, EdgeError
from edge.pipeline.admission import Arrival
from edge.pipeline.plan_call import Fallback, Made, PlannerCall
from edge.pipeline.plan_format import Step, compound_questions, step_piece
from edge.pipeline.planning import Plan
from edge.pipeline.recording import Recorder
from edge.privacy import describe_kinds
from edge.router.classifier import last_user_message
from edge.types import Notice, Preference, Reason, Request, Result, Strategy, Tier, Timings

__all__ = ["PlanExecutor", "step_request"]

Event = str | Notice | Result
Answer = Callable[..., AsyncIterator[Event]]  # Engine.answer(req, arrival, *, prelude, degraded, on_route)


@dataclass
class _Done:
    """How one step ended: its result, or the error it ended with (after the local retry)."""

    step: Step
    result: Result | None = None
    error: EdgeError | None = None
    retried: str = ""  # why it was asked again of the local model

    @property
    def text(self) -> str:
        """The step's answer as the client reads it."""
        return self.result.text if self.result is not None else f"(no answer: {self.error})"

    @property
    def degraded(self) -> bool:
        return self.result is None or bool(self.retried) or self.result.degraded


@dataclass
class _Progress:
    """The plan's state as it streams: what the client has, and what ended how."""

    started: float
    first_at: float | None = None
    sent: bool = False
    done: list[_Done] = field(default_factory=list)
    fallback: Reason | None = None  # a step failed before the client had anything: answer directly


def step_request(req: Request, index: int, step: Step, steps: int, *, preference: Preference | None = None,
                 suffix: str = "") -> Request:
    """Step `index` (0-based) of `steps` as a request of its own: the conversation before
    its last user message, then the step's ask; the parent's sampling, deadline and routing
    hints, and its share of max_tokens (which bounds the joined answer)."""
    g = req.generation
    last = max(i for i, m in enumerate(g.messages) if m.role == "user")
    params = replace(g.params, max_tokens=max(1, g.params.max_tokens // steps))
    gen = replace(g, messages=(*g.messages[:last], Message("user", step.ask)), assistant_prefix="", params=params,
                  request_id=f"{g.request_id}/{index + 1}{suffix}", confidence=False)
    return replace(req, generation=gen, strategy=Strategy.DIRECT, capable=step.capable, private_context=last,
                   preference=preference or req.preference)


class PlanExecutor:
    def __init__(self, settings: Settings, call: PlannerCall, answer: Answer, recorder: Recorder) -> None:
        self.settings, self.call, self.answer, self.recorder = settings, call, answer, recorder

    def wanted(self, req: Request) -> Reason | None:
        """Why this request is planned, or None to answer it directly."""
        if req.strategy == Strategy.PLAN:
            return Reason("PLAN_REQUESTED", "the client asked for strategy plan")
        if req.strategy == Strategy.AUTO and self.settings.plan.auto:
            n = compound_questions(last_user_message([(m.role, m.content) for m in req.generation.messages]))
            if n >= 2:
                return Reason("PLAN_COMPOUND", f"plan.auto: {n} questions in the request (the compound rule)")
        return None

    async def serve(self, req: Request, arrival: Arrival, why: Reason) -> AsyncIterator[Event]:
        """The plan's events (notices, the steps' answers in order, the joined Result), or
        the direct answer's when there is no plan."""
        progress = _Progress(time.monotonic())
        try:
            made = await self.call.plan(req, arrival)
        except (asyncio.CancelledError, GeneratorExit):
            self.recorder.cancelled(req.request_id, arrival.door)
            raise
        except Exception as exc:  # the planner's own failings are a Fallback: this would be a bug
            self.recorder.failure(req.request_id, exc, progress.started, arrival.door,
                                  client=arrival.tenant or arrival.peer)
            raise
        if isinstance(made, Fallback):
            events = self.answer(req, arrival, prelude=[why, made.reason], degraded=made.degraded)
        else:
            async with aclosing(self._execute(req, arrival, why, made, progress)) as steps:
                async for event in steps:
                    yield event
            if progress.fallback is None:
                return
            events = self.answer(req, arrival, prelude=[why, progress.fallback], degraded=True)
        async with aclosing(events):  # closed with the client: what runs below stops now
            async for event in events:
                yield event

    async def _execute(self, req: Request, arrival: Arrival, why: Reason, made: Made,
                       progress: _Progress) -> AsyncIterator[Event]:
        local_done = [asyncio.Event() for _ in made.steps]
        tasks = [asyncio.create_task(self._step(req, arrival, i, made.steps, local_done[:i], local_done[i]))
                 for i in range(len(made.steps))]
        try:
            yield Notice(Reason("PLAN_MADE", f"{made.planner.backend} planned {len(tasks)} steps; their answers "
                                             "follow in order"))
            for i, task in enumerate(tasks):
                done = await task
                progress.done.append(done)
                if done.result is None and not progress.sent:
                    progress.fallback = Reason("PLAN_STEP_FAILED", f"step {i + 1} failed ({done.error}): "
                                                                   "answered directly")
                    return
                progress.first_at = progress.first_at or time.monotonic()
                progress.sent = True
                yield step_piece(i, done.text)
            result = self._result(req, why, made, progress)
            await self.recorder.answer(result, req, peer=arrival.peer, parts_recorded=True)
            yield result
        except (asyncio.CancelledError, GeneratorExit):
            self.recorder.cancelled(req.request_id, arrival.door)
            raise
        except Exception as exc:
            self.recorder.failure(req.request_id, exc, progress.started, arrival.door,
                                  client=arrival.tenant or arrival.peer)
            raise
        finally:
            for task in tasks:
                task.cancel()  # a cancelled request, or a fallback: no step goes on
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one step -----------------------------------------------------------------------------

    async def _step(self, req: Request, arrival: Arrival, index: int, steps: list[Step],
                    earlier: list[asyncio.Event], mine: asyncio.Event) -> _Done:
        """Run one step; a failure is asked again of the local model once. Raises only for
        the request's deadline (nothing could answer it) and cancellation. `mine` is set
        once the step no longer needs the local model; a step routed local first waits
        for `earlier` (the steps before it) to be set."""
        step = steps[index]
        try:
            return _Done(step, await self._run(step_request(req, index, step, len(steps)), arrival, earlier, mine))
        except DeadlineExceeded:
            raise
        except EdgeError as exc:
            if req.preference != Preference.AUTO:  # local_only failed on the device; cloud_only may not go there
                return _Done(step, error=exc)
            retry = step_request(req, index, step, len(steps), preference=Preference.LOCAL_ONLY, suffix="+local")
            try:
                return _Done(step, await self._run(retry, arrival, earlier, mine), retried=str(exc))
            except DeadlineExceeded:
                raise
            except EdgeError as again:
                return _Done(step, error=again, retried=str(exc))
        finally:
            mine.set()

    async def _run(self, sreq: Request, arrival: Arrival, earlier: list[asyncio.Event],
                   mine: asyncio.Event) -> Result:
        """One step through the direct path. Routed remote first, it runs at once (and lets
        the next local step go); routed local first, it waits for the earlier steps to be
        done with the local model, so the plan's own steps never queue there as load."""
        async def routed(planned: Any) -> None:
            if isinstance(planned, Plan) and planned.chain and planned.chain[0].remote is None:
                await asyncio.gather(*(e.wait() for e in earlier))
            else:
                mine.set()

        sarrival = replace(arrival, request_id=sreq.request_id, time_remaining=None)
        result: Result | None = None
        async for event in self.answer(sreq, sarrival, on_route=routed):
            if isinstance(event, Result):
                result = event
        if result is None:  # Engine.answer ends with a Result or raises; this would be a bug
            raise EdgeError(f"step {sreq.request_id} ended without a result")
        return result

    # -- the joined answer --------------------------------------------------------------------

    def _result(self, req: Request, why: Reason, made: Made, progress: _Progress) -> Result:
        planner, results = made.planner, [d.result for d in progress.done if d.result is not None]
        parts = [planner, *results]
        ended = time.monotonic()
        return Result(
            request_id=req.request_id, text="".join(step_piece(i, d.text) for i, d in enumerate(progress.done)),
            finish_reason="length" if any(r.finish_reason == "length" for r in results) else "stop",
            prompt_tokens=sum(r.prompt_tokens for r in parts), completion_tokens=sum(r.completion_tokens for r in parts),
            tier=Tier.LOCAL, backend="plan", model="join",
            timings=Timings(time_to_first_token_ms=((progress.first_at or ended) - progress.started) * 1000,
                            total_ms=(ended - progress.started) * 1000),
            trace=_trace(why, made, progress.done), degraded=any(d.degraded for d in progress.done),
            cost_usd=sum(r.cost_usd for r in parts),
            attempts=[a for r in parts for a in r.attempts])


def _trace(why: Reason, made: Made, done: list[_Done]) -> list[Reason]:
    """Why it was planned, the plan (planner, tokens, cost), then one line per step."""
    planner = made.planner
    trace = [why, Reason("PLAN", f"{planner.backend} ({planner.tier}) planned {len(made.steps)} steps: "
                                 f"{planner.prompt_tokens}+{planner.completion_tokens} tokens, "
                                 f"${planner.cost_usd:.6f}")]
    if made.redacted:
        trace.append(Reason("PII_REDACTED", f"{describe_kinds(made.redacted)} replaced by placeholders in what "
                                            "the planner received; the steps put the values back on the device"))
    return trace + [_step_reason(i, d) for i, d in enumerate(done)]


def _step_reason(i: int, d: _Done) -> Reason:
    """One trace line per step: where it ran, the codes of its own trace, what it cost."""
    ask = d.step.ask if len(d.step.ask) <= 80 else d.step.ask[:77] + "..."
    capable = " (marked capable)" if d.step.capable else ""
    if d.result is None:
        return Reason("PLAN_STEP_FAILED", f"{i + 1}{capable}: no answer ({d.error}): {ask}")
    r = d.result
    retried = f"; asked again of the local model after: {d.retried}" if d.retried else ""
    return Reason("PLAN_STEP", f"{i + 1}{capable}: {r.tier}/{r.backend} [{', '.join(x.code for x in r.trace)}] "
                               f"{r.prompt_tokens}+{r.completion_tokens} tokens, ${r.cost_usd:.6f}"
                               f"{', degraded' if r.degraded else ''}{retried}: {ask}")
