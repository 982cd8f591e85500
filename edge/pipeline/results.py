"""Build the result of a finished chain: timings, the trace of reasons, whether the
answer is degraded, and what came from the cache. Pure: no I/O, no clocks read here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.cache_policy import CachePolicy
from edge.config import Settings
from edge.pipeline.chain import Served
from edge.pipeline.planning import Plan
from edge.privacy import describe_kinds
from edge.types import CacheInfo, Outcome, Reason, Tier, Timings

__all__ = ["Clocking", "explain", "timings", "cache_fallback_info"]


@dataclass(frozen=True)
class Clocking:
    """time.monotonic() readings of one request: arrival, first text, end."""

    started: float
    first_at: float
    ended: float


def timings(c: Clocking, served: Served) -> Timings:
    final = served.final
    decode_s = c.ended - c.first_at
    # Remote answers come over the network in bursts (a unary one all at once): a rate is
    # only the local model's, whose tokens are timed as they are made.
    local = served.candidate.remote is None and served.candidate.name != "cache"
    return Timings(
        queue_wait_ms=final.queue_wait_s * 1000,
        time_to_first_token_ms=(c.first_at - c.started) * 1000,
        total_ms=(c.ended - c.started) * 1000,
        tokens_per_second=(final.completion_tokens - 1) / decode_s
        if local and decode_s > 0 and final.completion_tokens > 1 else 0.0,
    )


def _tried(served: Served) -> str:
    return "; ".join(f"{a.backend}: {a.outcome}" for a in served.attempts if a.tier != Tier.LOCAL)


def _degradation(plan: Plan, served: Served) -> tuple[list[Reason], bool]:
    """Was the answer served in a reduced mode (the local model, when the plan wanted
    more), or after failures? The reasons say which."""
    cand = served.candidate
    degraded = plan.decision.tiers[0] != Tier.LOCAL and cand.tier == Tier.LOCAL
    unconfident = any(a.outcome == Outcome.LOW_CONFIDENCE for a in served.attempts)
    if unconfident and cand.name == "local":
        return [Reason("DEGRADED_LOCAL", f"the local answer was not confident, but no escalation answered "
                                         f"({_tried(served)}); served by the local model after all")], True
    if degraded:
        return [Reason("DEGRADED_LOCAL", f"no remote tier could answer ({_tried(served)}); "
                                         "served by the local model")], True
    # A cascade's escalation (and a provider's block, when configured to fall back) is a
    # decision, not a failure: its own reason says so, and it is no FAILOVER.
    failed = [a for a in served.attempts[:-1] if a.outcome not in (Outcome.LOW_CONFIDENCE, Outcome.CONTENT_FILTER)]
    if failed:
        return [Reason("FAILOVER", f"served by {cand.name} after {len(failed)} failed or skipped attempt(s)")], False
    return [], False


def _cascade(served: Served) -> tuple[list[Reason], bool]:
    v, cand = served.verdict, served.candidate
    if v is None:
        return [], False
    if v.kept:  # an answer the cascade would have escalated, kept for want of anywhere to go
        return [Reason("CASCADE_KEPT_LOCAL", f"{v.why}; but no remote tier is reachable and no cached answer is "
                                             "close, so the local answer stands")], True
    if v.confident and cand.name == "local":
        return [Reason("CASCADE_CONFIDENT", v.why)], False
    return [], False


def cache_fallback_info(plan: Plan, served: Served) -> CacheInfo | None:
    fb = plan.lookup.fallback
    return CachePolicy.hit_info(fb) if served.candidate.name == "cache" and fb is not None else None


def explain(plan: Plan, served: Served, notices: Sequence[Reason], settings: Settings) -> tuple[list[Reason], bool]:
    """The answer's trace (the decision's reasons, then what happened) and whether it is degraded."""
    trace = list(plan.decision.reasons)
    failed, degraded = _degradation(plan, served)
    trace += failed
    trace += notices
    cascade, kept = _cascade(served)
    trace += cascade
    fb = plan.lookup.fallback
    if served.candidate.name == "cache" and fb is not None:
        local = next((a.outcome for a in served.attempts if a.backend == "local"), "")
        trace.append(Reason("CACHE_FALLBACK", f"local model: {local or 'no answer'}, no remote tier reachable: "
                                              f"served a cached answer by {fb.tier}/{fb.backend} ({fb.kind} match, "
                                              f"cosine {fb.similarity:.3f} >= {settings.cache.fallback_threshold})"))
    if served.usage_estimated:
        trace.append(Reason("USAGE_ESTIMATED", f"{served.candidate.name} reported no token usage; counts are estimates"))
    for a in served.attempts:
        if a.outcome in (Outcome.OVER_BUDGET, Outcome.OVER_COST_CEILING):
            trace.append(Reason("COST_" + a.outcome.upper(), f"{a.backend}: {a.detail}"))
    if plan.redaction is not None and plan.pii:  # (a plan's step has one that only cuts its context)
        trace.append(Reason("PII_REDACTED", f"{describe_kinds(plan.pii)} replaced by placeholders in everything sent "
                                            "to remote tiers (and put back in the answer)"))
    return trace, degraded or kept
