"""The planner call of a plan: ask a remote tier to split a request into steps.

The planner receives the last user message only (the conversation's earlier turns stay
on the device, where the steps run), through the same PII guard as any remote call:
under privacy.pii = 'keep_local' a request holding personal data is never sent (the
request is answered directly, not degraded: policy, not failure); under 'redact' the
planner sees placeholders, and the steps' asks get the values back on the device. The
call runs through the chain runner (breaker, retries, deadline) and the cost gate, and
is recorded as a request of its own (`<id>/plan`: ledger row, metrics, log line).

`PlannerCall.plan` returns the steps (`Made`) or why there are none (`Fallback`): no
planner to ask, the planner down or over budget, or a reply that is no valid plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from edge.backends.base import GenerationRequest, Message, SamplingParams
from edge.config import Settings
from edge.cost_gate import CostGate
from edge.errors import BackendError, EdgeError
from edge.pipeline.admission import Arrival
from edge.pipeline.candidates import Candidate, RemoteState
from edge.pipeline.chain import Served, run_chain
from edge.pipeline.plan_format import PLANNER_PROMPT, PlanDefect, Step, parse_plan
from edge.pipeline.planning import Planner, Redaction
from edge.pipeline.recording import Recorder
from edge.privacy import describe_kinds
from edge.types import Preference, Reason, Request, Result, Strategy, Tier, Timings

__all__ = ["PlannerCall", "Made", "Fallback"]


@dataclass(frozen=True)
class Made:
    """A plan: its steps (private values restored), the planner call's own result, and the
    kinds of personal data the planner saw as placeholders."""

    steps: list[Step]
    planner: Result
    redacted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Fallback:
    """No plan: the request is answered directly, with `reason` first in its trace."""

    reason: Reason
    degraded: bool
    planner: Result | None = None  # the planner call, when one was made and answered


class PlannerCall:
    def __init__(self, settings: Settings, router: Planner, cost_gate: CostGate, recorder: Recorder) -> None:
        """`router` is the request path's Planner: the remote backends, the PII scan and redaction."""
        self.settings, self.router, self.cost_gate, self.recorder = settings, router, cost_gate, recorder

    def backend(self) -> RemoteState | None:
        """plan.planner by name, else the first remote backend in routing.chain order (None: none built)."""
        remotes = self.router.remotes
        if self.settings.plan.planner:
            return remotes.get(self.settings.plan.planner)
        for tier in (Tier(t) for t in self.settings.routing.chain if t != "local"):
            for st in remotes.values():
                if st.tier == tier:
                    return st
        return None

    def _kept_local(self, req: Request) -> Fallback | None:
        routing = self.settings.routing
        why = ("routing.offline" if routing.offline else "routing.local_only" if routing.local_only
               else "the request's preference local_only" if req.preference == Preference.LOCAL_ONLY else "")
        if why:
            return Fallback(Reason("PLAN_KEPT_LOCAL", f"{why}: the planner is remote, so the request is answered "
                                                      "directly"), degraded=False)
        if self.backend() is None:
            return Fallback(Reason("PLAN_NO_PLANNER", "no remote backend to plan with (plan.planner, [[onprem]], "
                                                      "[[cloud]]): answered directly"), degraded=False)
        return None

    async def plan(self, req: Request, arrival: Arrival) -> Made | Fallback:
        """Ask the planner; never raises for the planner's failings (only cancellation)."""
        if (kept := self._kept_local(req)) is not None:
            return kept
        st = self.backend()
        assert st is not None  # _kept_local said there is one
        preq = self._request(req)
        pii = await self.router.scan_pii(preq)
        redaction: Redaction | None = None
        if pii and self.settings.privacy.pii == "keep_local":
            return Fallback(Reason("PLAN_KEPT_LOCAL", f"the request holds {describe_kinds(pii)} and privacy.pii = "
                                                      "keep_local: the remote planner never sees it"), degraded=False)
        if pii:  # privacy.pii = 'redact' (with 'off' the scan finds nothing)
            redaction = self.router.redaction()
        cand = Candidate(st.backend.name, st.tier, st.backend, st.backend.model, st)
        chain, skipped = await self.cost_gate.check(preq, [cand])
        started = time.monotonic()
        try:
            text, served = await self._call(preq, chain, skipped, redaction)
        except EdgeError as exc:
            self._settle(preq, 0.0)
            self.recorder.call_failed(preq.request_id, exc, started, backend=cand.name, tier=str(cand.tier),
                                      reason="PLANNER")
            return Fallback(Reason("PLANNER_UNAVAILABLE", f"the planner {cand.name} could not plan ({exc}): "
                                                          "answered directly"), degraded=True)
        planner = await self._record(preq, served, text, started, arrival, pii if redaction else [])
        return self._steps(text, planner, redaction, pii)

    def _steps(self, text: str, planner: Result, redaction: Redaction | None, pii: list[str]) -> Made | Fallback:
        try:
            steps = parse_plan(text, self.settings.plan.max_steps)
        except PlanDefect as defect:
            return Fallback(Reason(defect.code.upper(), f"the plan by {planner.backend} was refused ({defect.detail}): "
                                                        "answered directly"), degraded=True, planner=planner)
        if redaction is not None:  # the planner wrote placeholders: the device puts the values back
            restorer = redaction.restorer
            steps = [replace(s, ask=restorer.feed(s.ask) + restorer.flush()) for s in steps]
        if len(steps) == 1:
            return Fallback(Reason("PLAN_SINGLE_STEP", f"{planner.backend} found one step in the request: answered "
                                                       "directly"), degraded=False, planner=planner)
        return Made(steps, planner, pii if redaction is not None else [])

    def _request(self, req: Request) -> Request:
        """What the planner is asked: the plan format, then the last user message alone."""
        g, plan = req.generation, self.settings.plan
        last = next(m.content for m in reversed(g.messages) if m.role == "user")
        timeout = plan.planner_timeout_s
        if (left := g.remaining()) is not None:
            timeout = min(timeout, left / 2)  # the other half answers the request, with or without a plan
        prompt = PLANNER_PROMPT.replace("{max_steps}", str(plan.max_steps))
        gen = GenerationRequest(messages=(Message("system", prompt), Message("user", last)),
                                params=SamplingParams(max_tokens=plan.planner_max_tokens),
                                request_id=f"{g.request_id}/plan", deadline=time.monotonic() + timeout,
                                stream=g.stream, client=g.client)
        return Request(generation=gen, max_cost_usd=req.max_cost_usd, tenant=req.tenant, strategy=Strategy.DIRECT)

    async def _call(self, preq: Request, chain: list[Candidate], skipped: list, redaction: Redaction | None
                    ) -> tuple[str, Served]:
        parts: list[str] = []
        served: Served | None = None
        outbound = redaction.outbound if redaction is not None else None
        async for event in run_chain(preq.generation, chain, self.settings.resilience, skipped, outbound=outbound):
            if isinstance(event, str):
                parts.append(event)
            elif isinstance(event, Served):
                served = event
        if served is None:  # run_chain ends with Served or raises; this would be a bug
            raise BackendError("the planner's chain ended without an answer")
        return "".join(parts), served

    async def _record(self, preq: Request, served: Served, text: str, started: float, arrival: Arrival,
                      redacted: list[str]) -> Result:
        """The planner call as a request of its own: ledger row, metrics, log line."""
        final, cand = served.final, served.candidate
        ended = time.monotonic()
        cost = self.cost_gate.cost_of(cand, final.prompt_tokens, final.completion_tokens, ended - started)
        trace = [Reason("PLANNER", f"asked {cand.name} to plan request {preq.request_id.removesuffix('/plan')}")]
        if redacted:
            trace.append(Reason("PII_REDACTED", f"{describe_kinds(redacted)} replaced by placeholders in what the "
                                                "planner received"))
        result = Result(request_id=preq.request_id, text=text, finish_reason=final.finish_reason or "",
                        prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens, tier=cand.tier,
                        backend=cand.name, model=cand.model, timings=Timings(total_ms=(ended - started) * 1000),
                        trace=trace, attempts=list(served.attempts), cost_usd=cost)
        self._settle(preq, cost)
        await self.recorder.answer(result, preq, pii_found=bool(redacted), peer=arrival.peer)
        return result

    def _settle(self, preq: Request, cost: float) -> None:
        fleet = self.cost_gate.fleet
        if fleet is not None:  # the fleet's lease held an estimate for the call: release it, pay what it cost
            fleet.settle(preq.request_id, cost)
