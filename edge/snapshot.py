"""One read of the daemon's live state, for `GetStatus` and the metrics scrape alike.

Built by Runtime.snapshot(); nothing outside the runtime reaches into backends,
queues or breakers for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.backends.base import ModelDescription
from edge.types import Tier

__all__ = ["ModelSnapshot", "BackendSnapshot", "BudgetSnapshot", "RouterFitSnapshot", "Snapshot"]


@dataclass(frozen=True)
class ModelSnapshot:
    description: ModelDescription
    state: str                   # loading | ready | failed
    queue_depth: int
    queue_capacity: int
    active: int
    requests_total: int
    rejected_total: int
    cancelled_total: int
    tokens_generated_total: int
    last_completion_tokens: int
    profiled: bool
    prompt_tokens_per_second: float | None
    generation_tokens_per_second: float | None

    @property
    def name(self) -> str:
        return self.description.name


@dataclass(frozen=True)
class BackendSnapshot:
    name: str
    tier: Tier
    kind: str
    model: str
    breaker: str                 # closed | half_open | open
    consecutive_failures: int
    breaker_opened_total: int
    retry_in_s: float
    outstanding: int
    requests_total: int
    failures_total: int
    out_of_rotation: str
    capabilities: str = ""       # edge.backends.capabilities, one line
    probing: bool = False        # a background probe is in flight


@dataclass(frozen=True)
class BudgetSnapshot:
    period: str                  # day | month
    spent_usd: float
    limit_usd: float | None      # None: no budget for this period
    remaining_usd: float | None  # limit - spent (negative when overspent); None without a budget


@dataclass(frozen=True)
class RouterFitSnapshot:
    labels: int
    fitted: bool
    threshold: float | None = None
    estimated_agreement: float | None = None
    remote_share: float | None = None
    target: str = ""
    shadow_samples: int = 0


@dataclass(frozen=True)
class Snapshot:
    uptime_s: float
    default_model: str
    network: str                 # up | down | offline | local-only
    models: list[ModelSnapshot] = field(default_factory=list)
    backends: list[BackendSnapshot] = field(default_factory=list)
    budgets: list[BudgetSnapshot] = field(default_factory=list)
    cache_entries: int | None = None  # None: the answer cache is off
    cache_refused: dict[str, int] = field(default_factory=dict)  # semantic hits the guard refused, by reason
    hardware: Any = None              # edge.profiler.HardwareProfile once probed
    router: RouterFitSnapshot | None = None  # None: no teacher (no remote tier, or [calibration] off)
    fleet: Any = None                 # edge.fleet.link.FleetSnapshot; None: no [fleet]
