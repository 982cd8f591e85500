"""Shadow sampling: for a share of the requests the local model answered that were
allowed to leave the device, also ask the remote tier, off the client's path, and
label the pair. Escalations only label the answers the gate doubted; shadows label
the ones it kept, so the router learns from both.

Never for a request that may not leave the device: the plan's chain holds a remote
candidate only when LOCAL_ONLY, routing.local_only, offline mode, the PII guard and
the cost gate (ceilings, budgets) all allowed one, and the shadow passes the cost gate
again when it starts (its spending is new). The client already has its answer
when a shadow starts; at most `max_concurrent` run at once, and one that cannot start
is dropped, not queued. Each shadow call is a ledger row (reason SHADOW) with its cost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from edge.ledger import LedgerEntry
from edge.pipeline.chain import Served, run_chain
from edge.types import Notice, Tier

if TYPE_CHECKING:
    from edge.calibration.teacher import Teacher
    from edge.config import Settings
    from edge.confidence import Confidence
    from edge.cost_gate import CostGate
    from edge.pipeline.planning import Plan
    from edge.pipeline.recording import Recorder
    from edge.types import Result

__all__ = ["Shadow"]

log = logging.getLogger("edge.calibration")


class Shadow:
    def __init__(self, settings: Settings, teacher: Teacher, recorder: Recorder, cost_gate: CostGate, *,
                 rng: Callable[[], float] = random.random) -> None:
        self.settings, self.teacher, self.recorder, self.cost_gate = settings, teacher, recorder, cost_gate
        self.rate = settings.calibration.shadow_rate
        self.max_concurrent = settings.calibration.shadow_max_concurrent
        self._rng = rng
        self._running: set[asyncio.Task[None]] = set()
        self.started_total = self.dropped_total = 0
        self.refused_total = 0  # started, then refused by the cost gate (a budget spent since the plan)

    def maybe_sample(self, plan: Plan, served: Served, result: Result) -> None:
        """After the client's answer: start a shadow for this request, or not."""
        remotes = [c for c in plan.chain if c.remote is not None]
        if (not remotes or served.candidate.tier != Tier.LOCAL or served.candidate.name != "local"
                or result.degraded or served.verdict is not None and served.verdict.escalate
                or not result.text or self._rng() >= self.rate):
            return
        if len(self._running) >= self.max_concurrent:
            self.dropped_total += 1
            return
        confidence = served.verdict.confidence if served.verdict is not None else None
        task = asyncio.create_task(self._run(plan, remotes, result.text, confidence))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, plan: Plan, remotes: list, local_text: str, confidence: Confidence | None) -> None:
        generation = replace(plan.request.generation, stream=False, deadline=time.monotonic() + 120,
                             request_id=plan.request.request_id + ":shadow")
        # The plan's cost check was for the client's request, which spent nothing remotely;
        # the shadow is new spending, so it passes the gate again now: ceilings, this box's
        # budget as it stands, and the fleet's lease (which holds the estimate for it until
        # it settles, so shadows in flight cannot overdraw the lease either).
        remotes, refused = await self.cost_gate.check(replace(plan.request, generation=generation), remotes)
        if not remotes:
            self.refused_total += 1
            log.info("shadow sample not started: over a budget or ceiling",
                     extra={"request_id": generation.request_id, "why": "; ".join(a.detail for a in refused)})
            return
        self.started_total += 1  # a remote call is made (edge_router_shadow_samples)
        outbound = plan.redaction.outbound if plan.redaction is not None else None
        parts: list[str] = []
        served: Served | None = None
        started = time.monotonic()
        try:
            async for event in run_chain(generation, remotes, self.settings.resilience, outbound=outbound):
                if isinstance(event, str):
                    parts.append(event)
                elif isinstance(event, Served):
                    served = event
                elif isinstance(event, Notice):
                    continue
        except Exception as exc:  # noqa: BLE001 - a shadow that fails teaches nothing and costs no client anything
            log.info("shadow sample failed", extra={"request_id": generation.request_id, "error": str(exc)})
            served = None
        if served is None:
            if self.cost_gate.fleet is not None:
                self.cost_gate.fleet.settle(generation.request_id, 0.0)  # release the lease it held
            return
        remote_text = "".join(parts)
        if plan.redaction is not None:
            remote_text = plan.redaction.restorer.feed(remote_text) + plan.redaction.restorer.flush()
        final, cand = served.final, served.candidate
        cost = self.cost_gate.cost_of(cand, final.prompt_tokens, final.completion_tokens, 0.0)
        if self.cost_gate.fleet is not None:  # the fleet's budget pays for shadows too (its record = the ledgers)
            self.cost_gate.fleet.settle(generation.request_id, cost)
        self.recorder.shadow(LedgerEntry(
            request_id=generation.request_id, ts=time.time(), tier=str(cand.tier), backend=cand.name, model=cand.model,
            prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens, cost_usd=cost,
            latency_ms=(time.monotonic() - started) * 1000, outcome="ok", reasons=["SHADOW"]))
        self.teacher.observe_pair(plan, local_text, remote_text, source="shadow", confidence=confidence)

    async def close(self) -> None:
        """Cancel the shadows in flight."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the shadows in flight, and for their labels to be stored."""
        await asyncio.gather(*self._running, return_exceptions=True)
        await asyncio.wrap_future(self.teacher.store.submit(lambda: None))
