"""The policy: which backend answers a request, and why.

Pure: it sees names and preferences, never a socket or a model, so it is
testable with nothing loaded. Today there is one tier (local models); later
tiers add steps here, each adding its reason code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import Unavailable, UnknownModel
from edge.v1 import router_pb2 as pb

__all__ = ["Decision", "Reason", "decide"]


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str


@dataclass(frozen=True)
class Decision:
    model: str
    tier: int
    reasons: tuple[Reason, ...] = field(default_factory=tuple)


def decide(*, requested_model: str, preference: int, local_models: list[str], default_model: str) -> Decision:
    """Pick the model for a request. Raises UnknownModel or Unavailable with the reason."""
    reasons: list[Reason] = []
    if preference == pb.ROUTE_PREFERENCE_CLOUD_ONLY:
        raise Unavailable("routing.preference is CLOUD_ONLY but no remote tier is configured")
    if preference == pb.ROUTE_PREFERENCE_LOCAL_ONLY:
        reasons.append(Reason("PREF_LOCAL_ONLY", "the request must not leave this device"))
    if requested_model:
        if requested_model not in local_models:
            raise UnknownModel(f"model {requested_model!r} is not served here (available: {', '.join(local_models)})")
        reasons.append(Reason("MODEL_REQUESTED", f"the request named model {requested_model!r}"))
        return Decision(requested_model, pb.TIER_LOCAL, tuple(reasons))
    reasons.append(Reason("LOCAL_ONLY_TIER", f"local model {default_model!r} is the only tier configured"))
    return Decision(default_model, pb.TIER_LOCAL, tuple(reasons))
