"""What a request may cost and what it did cost: the cost gate before a chain runs
(per-request ceilings and ledger budgets), the cost of an answer after it, and the
budget gauges."""

from __future__ import annotations

import time

from edge.failover import Attempt, Candidate
from edge.ledger import Ledger
from edge.pricing import CostSettings, PriceTable, cost_usd, local_cost_usd
from edge.validation import ValidRequest

__all__ = ["Costs"]


class Costs:
    def __init__(self, settings: CostSettings, prices: PriceTable, ledger: Ledger) -> None:
        self.settings, self.prices, self.ledger = settings, prices, ledger

    def price(self, cand: Candidate):  # type: ignore[no-untyped-def]
        return self.prices.price_for(getattr(cand.backend, "kind", ""), cand.model)

    def gate(self, req: ValidRequest, chain: list[Candidate]) -> tuple[list[Candidate], list[Attempt]]:
        """Drop remote candidates whose worst-case cost (at max_tokens) breaks the
        request's ceiling, the configured per-request ceiling, or a budget from the ledger."""
        cost = self.settings
        ceilings = [c for c in (req.max_cost_usd, cost.max_cost_per_request_usd) if c > 0]
        budgets = cost.daily_budget_usd > 0 or cost.monthly_budget_usd > 0
        if not ceilings and not budgets:
            return chain, []
        prompt_est = req.generation.approx_prompt_tokens()
        # One read of the ledger per request, however many candidates are priced.
        now = time.time()
        status = self.ledger.budget_status(cost, now) if budgets and any(c.remote for c in chain) else None
        kept, skipped = [], []
        for cand in chain:
            price = self.price(cand) if cand.remote is not None else None
            if price is None:  # local work, on-prem or an unpriced model: nothing to gate on
                kept.append(cand)
                continue
            estimate = cost_usd(price, prompt_est, req.generation.params.max_tokens)
            if ceilings and estimate > min(ceilings):
                skipped.append(Attempt(cand.name, cand.tier, "over_cost_ceiling", 0.0,
                                       f"up to ${estimate:.6f} at max_tokens, ceiling ${min(ceilings):.6f}"))
                continue
            if budgets:
                ok, why = self.ledger.allows(estimate, cost, now, status)
                if not ok:
                    skipped.append(Attempt(cand.name, cand.tier, "over_budget", 0.0, why))
                    continue
            kept.append(cand)
        return kept, skipped

    def of(self, cand: Candidate, final_prompt: int, final_completion: int, seconds: float) -> float:
        if cand.remote is None:
            c = self.settings
            return local_cost_usd(seconds, watts=c.local_watts, usd_per_kwh=c.usd_per_kwh,
                                  amortization_usd_per_hour=c.local_amortization_usd_per_hour)
        price = self.price(cand)
        return cost_usd(price, final_prompt, final_completion) if price is not None else 0.0

    def budget_snapshot(self) -> dict[str, tuple[float, float]] | None:
        """{'day'|'month': (spent, limit)} for each configured budget; None when there is none."""
        cost = self.settings
        if cost.daily_budget_usd <= 0 and cost.monthly_budget_usd <= 0:
            return None
        status = self.ledger.budget_status(cost)
        return {period: (w.spent_usd, w.limit_usd) for period, w in (("day", status.day), ("month", status.month))
                if w.limit_usd is not None}
