"""The policy: which tiers may answer a request, in what order, and why.

Pure: it sees names, preferences and configuration, never a socket or a model, so
every rule is testable with nothing loaded. Each rule that applies adds a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import Unavailable, UnknownModel
from edge.v1 import router_pb2 as pb

__all__ = ["Decision", "Reason", "decide", "REMOTE_TIERS"]

REMOTE_TIERS = ("onprem", "cloud")


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str


@dataclass(frozen=True)
class Decision:
    model: str                      # the local model that answers if the chain reaches local
    tiers: tuple[str, ...]          # tiers to try, in order ("onprem", "cloud", "local")
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    @property
    def wants_remote(self) -> bool:
        return any(t in REMOTE_TIERS for t in self.tiers)


def decide(*, requested_model: str, preference: int, local_models: list[str], default_model: str,
           remote_tiers: tuple[str, ...] = (), chain: tuple[str, ...] = ("onprem", "cloud", "local"),
           offline: bool = False, local_only: bool = False) -> Decision:
    """Plan the tiers for one request. `remote_tiers` are the remote tiers configured.

    Raises UnknownModel for a model this daemon does not serve, Unavailable when the
    request demands a remote tier and none may be used.
    """
    reasons: list[Reason] = []
    if requested_model and requested_model not in local_models:
        raise UnknownModel(f"model {requested_model!r} is not served here (available: {', '.join(local_models)})")
    model = requested_model or default_model
    if requested_model:
        reasons.append(Reason("MODEL_REQUESTED", f"the request named local model {requested_model!r}"))

    if preference == pb.ROUTE_PREFERENCE_CLOUD_ONLY:
        if local_only:
            raise Unavailable("routing.preference is CLOUD_ONLY but this daemon keeps every request local (routing.local_only)")
        if offline:
            raise Unavailable("routing.preference is CLOUD_ONLY but the daemon is in offline (air-gapped) mode")
        if not remote_tiers:
            raise Unavailable("routing.preference is CLOUD_ONLY but no remote tier is configured")
        tiers = tuple(t for t in chain if t in remote_tiers)
        reasons.append(Reason("PREF_CLOUD_ONLY", "the request must be served by a remote tier: " + " -> ".join(tiers)))
        return Decision(model, tiers, tuple(reasons))

    if local_only:
        reasons.append(Reason("CONFIG_LOCAL_ONLY", "routing.local_only keeps every request on this device"))
        return Decision(model, ("local",), tuple(reasons))
    if preference == pb.ROUTE_PREFERENCE_LOCAL_ONLY:
        reasons.append(Reason("PREF_LOCAL_ONLY", "the request must not leave this device"))
        return Decision(model, ("local",), tuple(reasons))
    if requested_model:
        return Decision(model, ("local",), tuple(reasons))
    if offline and remote_tiers:
        reasons.append(Reason("OFFLINE_MODE", "air-gapped mode: remote tiers are never contacted"))
        return Decision(model, ("local",), tuple(reasons))
    if not remote_tiers:
        reasons.append(Reason("LOCAL_ONLY_TIER", f"local model {model!r} is the only tier configured"))
        return Decision(model, ("local",), tuple(reasons))
    tiers = tuple(t for t in chain if t in remote_tiers) + ("local",)
    reasons.append(Reason("CHAIN", " -> ".join(tiers)))
    return Decision(model, tiers, tuple(reasons))
