"""`edge usage`: what the ledger's daily aggregates say, one row per UTC day.

Counts, tokens, cost, degraded and failed shares and reason codes come from the
aggregate tables the ledger keeps in the same transaction as each row, so a report
costs the same at any history length. The median latency is exact while the day's
rows are within `ledger_retention_days`, and read from a latency histogram (5% wide
buckets) after they were folded away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["DayUsage", "format_usage", "TIER_COLUMNS"]

TIER_COLUMNS = ("local", "onprem", "cloud")


@dataclass(frozen=True)
class DayUsage:
    """One UTC day's requests, summed. p50_latency_ms is None on a day without requests."""

    day: date
    requests: int
    by_tier: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    p50_latency_ms: float | None
    degraded_share: float
    failed: int
    top_reasons: list[tuple[str, int]]


def format_usage(rows: list[DayUsage]) -> str:
    """A fixed-width table of `usage_by_day` rows with a total line, for `edge usage`."""
    header = ("day", "requests", "local", "onprem", "cloud", "tokens in", "tokens out", "cost USD",
              "p50 ms", "degraded", "failed", "top reasons")
    body = []
    for u in rows:
        body.append((
            u.day.isoformat(), str(u.requests), str(u.by_tier["local"]), str(u.by_tier["onprem"]),
            str(u.by_tier["cloud"]), str(u.prompt_tokens), str(u.completion_tokens), f"{u.cost_usd:.4f}",
            "-" if u.p50_latency_ms is None else f"{u.p50_latency_ms:.0f}",
            f"{u.degraded_share:.0%}", str(u.failed),
            ", ".join(f"{code} ({n})" for code, n in u.top_reasons) or "-",
        ))
    total_requests = sum(u.requests for u in rows)
    degraded = sum(u.degraded_share * u.requests for u in rows)
    total = (
        "total", str(total_requests), *(str(sum(u.by_tier[t] for u in rows)) for t in TIER_COLUMNS),
        str(sum(u.prompt_tokens for u in rows)), str(sum(u.completion_tokens for u in rows)),
        f"{sum(u.cost_usd for u in rows):.4f}", "",
        f"{degraded / total_requests:.0%}" if total_requests else "0%", str(sum(u.failed for u in rows)), "",
    )
    table = [header, *body, total]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        # Text columns left-aligned, numbers right-aligned; no trailing spaces.
        cells = [c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body), rule, line(total)])
