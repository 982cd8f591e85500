"""The core's own types: what a request, a plan's attempt and a result are.

Nothing here imports protobuf or a web framework. The front doors (edge.server for
gRPC, edge.http_api for HTTP) translate their wire formats into `Request` and
`Result` at the edge; everything between them speaks only these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edge.backends.base import GenerationRequest

__all__ = [
    "Tier", "REMOTE_TIERS", "Preference", "Strategy", "Outcome", "Reason", "Request", "Timings", "ServedBy", "CacheInfo",
    "Attempt", "Notice", "Result",
]


class Tier(enum.StrEnum):
    """Where an answer was made. The string values are what the ledger, traces,
    metrics and the HTTP door show; the gRPC door maps them to its enum."""

    LOCAL = "local"    # a model on this device
    ONPREM = "onprem"  # a server on the local network
    CLOUD = "cloud"    # a cloud provider


REMOTE_TIERS: tuple[Tier, ...] = (Tier.ONPREM, Tier.CLOUD)


class Preference(enum.StrEnum):
    """Where a request may be served (the client's routing hint)."""

    AUTO = "auto"              # the router decides
    LOCAL_ONLY = "local_only"  # never leaves this device
    CLOUD_ONLY = "cloud_only"  # must be served by a remote tier


class Strategy(enum.StrEnum):
    """How a request is answered (the client's routing hint, or [plan] auto)."""

    AUTO = "auto"      # the daemon decides: plan what [plan] auto recognises as compound, else direct
    DIRECT = "direct"  # one request, one answer from one tier
    PLAN = "plan"      # a remote planner splits it; each step is routed on its own (edge.pipeline.plan_execute)


class Outcome(enum.StrEnum):
    """How one attempt at one backend ended (or why it was never made)."""

    OK = "ok"
    RETRYABLE_ERROR = "retryable_error"      # failed in a way worth retrying or failing over
    MISCONFIGURED = "misconfigured"          # bad key, no access, unknown model: out of rotation
    BREAKER_OPEN = "breaker_open"
    OUT_OF_ROTATION = "out_of_rotation"
    NO_TIME = "no_time"                      # a retry would not fit in the deadline
    OVER_BUDGET = "over_budget"
    OVER_COST_CEILING = "over_cost_ceiling"
    QUEUE_FULL = "queue_full"                # the local model was chosen first but is busy
    LOW_CONFIDENCE = "low_confidence"        # the cascade judged the local answer and escalated
    CONTENT_FILTER = "content_filter"        # the provider blocked the answer; the next backend answered


@dataclass(frozen=True)
class Reason:
    """One step of a routing decision: a machine-readable code and a short human detail."""

    code: str
    detail: str


@dataclass(frozen=True)
class Request:
    """A validated request (edge.validation builds it): what to generate, and the
    routing hints and identity that decide where."""

    generation: GenerationRequest
    model: str = ""                      # a local model by name; "" = the router chooses
    preference: Preference = Preference.AUTO
    max_latency_ms: int = 0              # 0 = no ceiling
    max_cost_usd: float = 0.0            # 0 = no ceiling
    # Who asked: the authenticated client's name ("" without a tokens file). Cached
    # answers never cross tenants.
    tenant: str = ""
    strategy: Strategy = Strategy.AUTO
    # A plan's step: its planner's verdict, True = it needs a capable model (weighed as the
    # hardest difficulty), False = a small model can answer it (difficulty at most the
    # cascade band: answered locally, its confidence checked). None: not a plan's step.
    # Cost, PII and load still decide as for any request.
    capable: bool | None = None
    # Leading messages that never leave the device (a plan's step: the conversation before
    # its self-contained ask); remote tiers receive what follows them.
    private_context: int = 0

    @property
    def request_id(self) -> str:
        return self.generation.request_id


@dataclass
class Timings:
    queue_wait_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_second: float = 0.0


@dataclass(frozen=True)
class ServedBy:
    tier: Tier
    backend: str
    model: str


@dataclass(frozen=True)
class CacheInfo:
    """Set on a result that came from the answer cache."""

    match: str          # exact | semantic | fallback
    similarity: float
    age_s: float
    original: ServedBy  # who made the cached answer


@dataclass(frozen=True)
class Attempt:
    backend: str
    tier: Tier
    outcome: Outcome
    latency_ms: float
    detail: str = ""


@dataclass(frozen=True)
class Notice:
    """Something the client should know mid-stream (a failover, an escalation)."""

    reason: Reason


@dataclass
class Result:
    """A finished answer, as both doors report it."""

    request_id: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tier: Tier
    backend: str
    model: str
    timings: Timings
    trace: list[Reason] = field(default_factory=list)
    degraded: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    cost_usd: float = 0.0
    cache: CacheInfo | None = None  # set when the answer came from the answer cache

    @property
    def served_by(self) -> ServedBy:
        return ServedBy(self.tier, self.backend, self.model)
