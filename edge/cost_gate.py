"""What a request may cost and what it did cost: the cost gate before a chain runs
(per-request ceilings and ledger budgets) and the cost of an answer after it. The
price table itself is edge.pricing."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from edge.ledger import BudgetStatus, Ledger
from edge.pipeline.candidates import Candidate
from edge.config import CostSettings
from edge.pricing import Price, PriceTable, cost_usd, local_cost_usd
from edge.types import Attempt, Outcome, Request

if TYPE_CHECKING:
    from edge.fleet.budget import FleetBudget

__all__ = ["CostGate"]


class CostGate:
    def __init__(self, settings: CostSettings, prices: PriceTable, ledger: Ledger) -> None:
        self.settings, self.prices, self.ledger = settings, prices, ledger
        self.fleet: FleetBudget | None = None  # the fleet's shared budget ([fleet] daily_budget_usd)

    def price(self, cand: Candidate) -> Price | None:
        """The price of a remote candidate's model; None for local work or an unpriced model."""
        if cand.remote is None:
            return None
        return self.prices.price_for(cand.remote.backend.kind, cand.model)

    @property
    def has_budget(self) -> bool:
        return self.settings.daily_budget_usd > 0 or self.settings.monthly_budget_usd > 0

    async def check(self, req: Request, chain: list[Candidate]) -> tuple[list[Candidate], list[Attempt]]:
        """Drop remote candidates whose worst-case cost (at max_tokens) breaks the
        request's ceiling, the configured per-request ceiling, or a budget. The ledger
        keeps the month's spending in memory; only the first check of a month reads it
        from the file, on a thread: SQLite never runs on the event loop."""
        ceilings = [c for c in (req.max_cost_usd, self.settings.max_cost_per_request_usd) if c > 0]
        if not ceilings and not self.has_budget and self.fleet is None:
            return chain, []
        now = time.time()
        status = None
        if self.has_budget and any(c.remote for c in chain):
            if self.ledger.budget_loaded(now):
                status = self.ledger.budget_status(self.settings, now)  # memory: O(1)
            else:
                status = await asyncio.to_thread(self.ledger.budget_status, self.settings, now)
        return self.filter(req, chain, ceilings, status, now)

    def filter(self, req: Request, chain: list[Candidate], ceilings: list[float], status: BudgetStatus | None,
               now: float) -> tuple[list[Candidate], list[Attempt]]:
        """Pure: the candidates kept and those skipped (with why), given the budget status."""
        prompt_est = req.generation.approx_prompt_tokens()
        kept, skipped = [], []
        for cand in chain:
            price = self.price(cand)
            if price is None:  # local work, on-prem or an unpriced model: nothing to gate on
                kept.append(cand)
                continue
            estimate = cost_usd(price, prompt_est, req.generation.params.max_tokens)
            if ceilings and estimate > min(ceilings):
                skipped.append(Attempt(cand.name, cand.tier, Outcome.OVER_COST_CEILING, 0.0,
                                       f"up to ${estimate:.6f} at max_tokens, ceiling ${min(ceilings):.6f}"))
                continue
            why = self._over_budget(req, estimate, status, now)
            if why:
                skipped.append(Attempt(cand.name, cand.tier, Outcome.OVER_BUDGET, 0.0, why))
                continue
            kept.append(cand)
        return kept, skipped

    def _over_budget(self, req: Request, estimate: float, status: BudgetStatus | None, now: float) -> str:
        """Why this box's budget or the fleet's (a lease, held in memory) cannot take `estimate`; "" if it can."""
        if status is not None:
            ok, why = self.ledger.allows(estimate, self.settings, now, status)
            if not ok:
                return why
        if self.fleet is not None:
            ok, why = self.fleet.allows(estimate, req.request_id)
            if not ok:
                return why
        return ""

    def cost_of(self, cand: Candidate, prompt_tokens: int, completion_tokens: int, seconds: float) -> float:
        """What an answer cost: the remote price, or the local energy and amortization."""
        if cand.remote is None:
            c = self.settings
            return local_cost_usd(seconds, watts=c.local_watts, usd_per_kwh=c.usd_per_kwh,
                                  amortization_usd_per_hour=c.local_amortization_usd_per_hour)
        price = self.price(cand)
        return cost_usd(price, prompt_tokens, completion_tokens) if price is not None else 0.0
