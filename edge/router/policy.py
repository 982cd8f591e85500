"""The policy: which tiers may answer a request, in what order, and why.

Pure: it sees names, preferences and configuration, never a socket or a model, so
every rule is testable with nothing loaded. Each rule that applies adds a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import Unavailable, UnknownModel
from edge.router.signals import Signals, Thresholds
from edge.types import REMOTE_TIERS, Preference, Reason, Tier

__all__ = ["Decision", "decide", "weigh"]

LOCAL = (Tier.LOCAL,)


@dataclass(frozen=True)
class Decision:
    model: str                      # the local model that answers if the chain reaches local
    tiers: tuple[Tier, ...]         # tiers to try, in order (onprem, cloud, local)
    reasons: tuple[Reason, ...] = field(default_factory=tuple)
    # Answer locally, then check the local model's confidence and escalate when low.
    cascade: bool = False
    # The router may still choose between local and remote (AUTO with remote tiers).
    open_choice: bool = False

    @property
    def wants_remote(self) -> bool:
        return any(t in REMOTE_TIERS for t in self.tiers)


def decide(*, requested_model: str, preference: Preference, local_models: list[str], default_model: str,
           remote_tiers: tuple[Tier, ...] = (), chain: tuple[str, ...] = ("onprem", "cloud", "local"),
           offline: bool = False, local_only: bool = False, sensitive: str = "") -> Decision:
    """Plan the tiers for one request. `remote_tiers` are the remote tiers configured.

    Raises UnknownModel for a model this daemon does not serve, Unavailable when the
    request demands a remote tier and none may be used. `sensitive` names what the
    privacy guard found in a request it must keep on this device ("" = nothing).
    """
    reasons: list[Reason] = []
    if requested_model and requested_model not in local_models:
        raise UnknownModel(f"model {requested_model!r} is not served here (available: {', '.join(local_models)})")
    model = requested_model or default_model
    if requested_model:
        reasons.append(Reason("MODEL_REQUESTED", f"the request named local model {requested_model!r}"))

    if preference == Preference.CLOUD_ONLY:
        if local_only:
            raise Unavailable("routing.preference is CLOUD_ONLY but this daemon keeps every request local (routing.local_only)")
        if offline:
            raise Unavailable("routing.preference is CLOUD_ONLY but the daemon is in offline (air-gapped) mode")
        if not remote_tiers:
            raise Unavailable("routing.preference is CLOUD_ONLY but no remote tier is configured")
        if sensitive:
            raise Unavailable(f"routing.preference is CLOUD_ONLY but the request holds {sensitive}, and "
                              "privacy.pii = 'keep_local' keeps such requests on this device")
        tiers = tuple(Tier(t) for t in chain if t in remote_tiers)
        reasons.append(Reason("PREF_CLOUD_ONLY", "the request must be served by a remote tier: " + " -> ".join(tiers)))
        return Decision(model, tiers, tuple(reasons))

    if local_only:
        reasons.append(Reason("CONFIG_LOCAL_ONLY", "routing.local_only keeps every request on this device"))
        return Decision(model, LOCAL, tuple(reasons))
    if preference == Preference.LOCAL_ONLY:
        reasons.append(Reason("PREF_LOCAL_ONLY", "the request must not leave this device"))
        return Decision(model, LOCAL, tuple(reasons))
    if sensitive:
        reasons.append(Reason("PII_KEEP_LOCAL", f"the request holds {sensitive}; privacy.pii keeps it on this device"))
        return Decision(model, LOCAL, tuple(reasons))
    if requested_model:
        return Decision(model, LOCAL, tuple(reasons))
    if offline and remote_tiers:
        reasons.append(Reason("OFFLINE_MODE", "air-gapped mode: remote tiers are never contacted"))
        return Decision(model, LOCAL, tuple(reasons))
    if not remote_tiers:
        reasons.append(Reason("LOCAL_ONLY_TIER", f"local model {model!r} is the only tier configured"))
        return Decision(model, LOCAL, tuple(reasons))
    tiers = tuple(Tier(t) for t in chain if t in remote_tiers) + LOCAL
    reasons.append(Reason("CHAIN", " -> ".join(tiers)))
    return Decision(model, tiers, tuple(reasons), open_choice=True)


def weigh(decision: Decision, s: Signals, th: Thresholds) -> Decision:
    """Steps 2-6 for a request the hard constraints left open: cost, latency, load,
    difficulty, cascade, in that order. The first step that decides wins; each step
    that applies adds a reason. Remote first means the local model is still the
    fallback; local first means remote tiers take over if the local queue is full."""
    if not decision.open_choice:
        return decision
    remote = tuple(t for t in decision.tiers if t != Tier.LOCAL)
    reasons = [r for r in decision.reasons if r.code != "CHAIN"]

    def go_remote(code: str, detail: str) -> Decision:
        return Decision(decision.model, remote + LOCAL, tuple(reasons + [Reason(code, detail)]))

    def go_local(code: str, detail: str, cascade: bool = False) -> Decision:
        return Decision(decision.model, LOCAL + remote, tuple(reasons + [Reason(code, detail)]), cascade=cascade)

    # 2. cost
    if not s.remote_affordable:
        return go_local("COST_REMOTE_UNAFFORDABLE", "every remote candidate is over a cost ceiling or budget")
    # 3. latency
    if s.max_latency_ms and s.local_predicted_s is not None:
        ceiling = s.max_latency_ms / 1000
        if s.local_predicted_s > ceiling:
            if s.remote_predicted_s is None or s.remote_predicted_s <= ceiling or s.remote_predicted_s < s.local_predicted_s:
                remote_txt = "unknown" if s.remote_predicted_s is None else f"{s.remote_predicted_s:.2f}s"
                return go_remote("LATENCY_LOCAL_TOO_SLOW", f"local predicted {s.local_predicted_s:.2f}s > ceiling "
                                                           f"{ceiling:.2f}s; remote {remote_txt}")
            reasons.append(Reason("LATENCY_BOTH_OVER", f"local {s.local_predicted_s:.2f}s and remote "
                                                       f"{s.remote_predicted_s:.2f}s both exceed {ceiling:.2f}s; local is faster"))
        else:
            reasons.append(Reason("LATENCY_LOCAL_OK", f"local predicted {s.local_predicted_s:.2f}s <= ceiling {ceiling:.2f}s"))
    # 4. load
    if s.queue_depth >= th.max_queue_depth:
        return go_remote("LOAD_QUEUE", f"{s.queue_depth} requests wait for the local model (threshold {th.max_queue_depth})")
    if s.cpu_percent is not None and s.cpu_percent >= th.cpu_percent:
        return go_remote("LOAD_CPU", f"CPU at {s.cpu_percent:.0f}% (threshold {th.cpu_percent:.0f}%)")
    if s.memory_percent is not None and s.memory_percent >= th.memory_percent:
        return go_remote("LOAD_MEMORY", f"memory at {s.memory_percent:.0f}% (threshold {th.memory_percent:.0f}%)")
    if s.on_battery and s.battery_percent is not None and s.battery_percent <= th.battery_percent:
        return go_remote("LOAD_BATTERY", f"on battery at {s.battery_percent:.0f}% (threshold {th.battery_percent:.0f}%)")
    if s.thermal_throttled:
        return go_remote("LOAD_THERMAL", "a temperature sensor is at or above its high mark")
    # 5. difficulty, 6. cascade
    if s.difficulty is None:
        return go_local("DEFAULT_LOCAL", "no signal calls for a remote tier; the local model is cheapest")
    if s.difficulty >= th.difficulty:
        return go_remote("DIFFICULTY_HIGH", f"difficulty {s.difficulty:.2f} >= {th.difficulty:.2f}")
    if th.cascade and s.difficulty >= th.cascade_band:
        return go_local("CASCADE_ARMED", f"difficulty {s.difficulty:.2f} is uncertain (>= {th.cascade_band:.2f}): "
                                         "answer locally, escalate if the local model is not confident", cascade=True)
    return go_local("DIFFICULTY_LOW", f"difficulty {s.difficulty:.2f} < {th.difficulty:.2f}")
