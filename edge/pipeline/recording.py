"""Record how a request ended: one ledger row, the metrics, one log line. One place for
answers and failures alike, from either door."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

from edge.config import Settings
from edge.errors import wire_error
from edge.ledger import Ledger, LedgerEntry
from edge.metrics import Metrics
from edge.types import Request, Result

__all__ = ["Recorder"]

log = logging.getLogger("edge.server")


class Recorder:
    def __init__(self, settings: Settings, ledger: Ledger, metrics: Metrics) -> None:
        self.settings, self.ledger, self.metrics = settings, ledger, metrics
        # One writer thread: ledger writes stay off the event loop, in order, and
        # close() waits for the last of them.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    def close(self) -> None:
        """Blocking: wait for the last ledger write."""
        self._writer.shutdown(wait=True)

    def _write(self, entry: LedgerEntry) -> Future[None]:
        """Queue a ledger write on the writer thread; never blocks the loop, never fails the
        request (a failed write is logged). The future says when the row is committed."""
        future = self._writer.submit(self.ledger.record, entry)
        future.add_done_callback(lambda f: f.exception() and log.error(
            "ledger write failed", extra={"request_id": entry.request_id, "error": str(f.exception())}))
        return future

    async def answer(self, result: Result, req: Request, *, pii_found: bool = False, peer: str = "",
                     parts_recorded: bool = False) -> None:
        """Committed before the client hears the answer is final: a kill -9 can then lose an
        answer nobody received, but never spending somebody was served. `parts_recorded`:
        an answer joined from calls recorded on their own (a plan's planner call and steps),
        so only its log line is written: budgets and metrics never count it twice."""
        if not parts_recorded:
            committed = self._write(LedgerEntry(
                request_id=result.request_id, ts=time.time(), tier=str(result.tier), backend=result.backend,
                model=result.model, prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                cost_usd=result.cost_usd, latency_ms=result.timings.total_ms, outcome="ok",
                reasons=[r.code for r in result.trace], degraded=result.degraded))
            with contextlib.suppress(Exception):  # a failed write is logged by _write(); the answer stands
                await asyncio.wrap_future(committed)
            self.metrics.observe_result(result, pii_action=self.settings.privacy.pii if pii_found else None)
        content = {}
        if self.settings.log_content:
            # Off by default: prompts and answers are the user's data, not the operator's.
            content = {"messages": [{"role": m.role, "content": m.content} for m in req.generation.messages],
                       "answer": result.text}
        log.info("request served", extra={
            # The log names tiers as the gRPC contract's enum does (TIER_LOCAL), as it always has.
            **content, "request_id": result.request_id, "tier": f"TIER_{result.tier.upper()}", "model": result.model,
            "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "total_ms": round(result.timings.total_ms, 1),
            "backend": result.backend, "degraded": result.degraded, "reasons": [x.code for x in result.trace],
            "attempts": [f"{a.backend}:{a.outcome}" for a in result.attempts],
            "client": req.tenant or peer})  # the token's or certificate's name, else the address

    def failure(self, request_id: str, exc: BaseException, started: float, door: str, client: str = "") -> None:
        """A request that ended in an error: a bug is logged whole, a client's error in one line."""
        wire = wire_error(exc, request_id)
        if wire.internal:
            log.error("internal error", exc_info=exc, extra={"request_id": request_id, "front_door": door})
        latency_ms = (time.monotonic() - started) * 1000
        log.info("request failed", extra={"request_id": request_id or "-", "status": wire.grpc_code,
                                          "error": wire.message, "front_door": door, "client": client})
        self.metrics.observe_failure(wire.grpc_code)
        self._write(LedgerEntry(request_id=request_id or "-", ts=time.time(), tier="", backend="", model="",
                                prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=latency_ms,
                                outcome=wire.grpc_code))

    def call_failed(self, request_id: str, exc: BaseException, started: float, *, backend: str, tier: str,
                    reason: str) -> None:
        """A call the daemon made for a request (a plan's planner call) that failed while the
        request went on: its ledger row and a log line, no failure metric (no client saw one)."""
        wire = wire_error(exc, request_id)
        self._write(LedgerEntry(request_id=request_id, ts=time.time(), tier=tier, backend=backend, model="",
                                prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
                                latency_ms=(time.monotonic() - started) * 1000, outcome=wire.grpc_code,
                                reasons=[reason]))
        log.info("call failed", extra={"request_id": request_id, "backend": backend, "status": wire.grpc_code,
                                       "error": wire.message})

    def shadow(self, entry: LedgerEntry) -> None:
        """A shadow sample's remote call: a ledger row (budgets count its cost), one log line."""
        self._write(entry)
        log.info("shadow sample", extra={"request_id": entry.request_id, "backend": entry.backend,
                                          "cost_usd": entry.cost_usd, "total_ms": round(entry.latency_ms, 1)})

    def cancelled(self, request_id: str, door: str) -> None:
        log.info("request cancelled", extra={"request_id": request_id, "front_door": door})
