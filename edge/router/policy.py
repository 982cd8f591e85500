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
    remote = tuple(Tier(t) for t in chain if t in remote_tiers)
    if preference == Preference.CLOUD_ONLY:
        _check_cloud_only(local_only=local_only, offline=offline, configured=bool(remote_tiers), sensitive=sensitive)
        reasons.append(Reason("PREF_CLOUD_ONLY", "the request must be served by a remote tier: " + " -> ".join(remote)))
        return Decision(model, remote, tuple(reasons))
    kept = _kept_local(preference=preference, local_only=local_only, sensitive=sensitive, offline=offline,
                       configured=bool(remote_tiers), model=model)
    if kept is not None:
        return Decision(model, LOCAL, tuple(reasons + [kept]))
    if requested_model:
        return Decision(model, LOCAL, tuple(reasons))
    tiers = remote + LOCAL
    reasons.append(Reason("CHAIN", " -> ".join(tiers)))
    return Decision(model, tiers, tuple(reasons), open_choice=True)


def _check_cloud_only(*, local_only: bool, offline: bool, configured: bool, sensitive: str) -> None:
    """A CLOUD_ONLY request nothing may send remote is refused, saying why."""
    why = "routing.preference is CLOUD_ONLY but "
    if local_only:
        raise Unavailable(why + "this daemon keeps every request local (routing.local_only)")
    if offline:
        raise Unavailable(why + "the daemon is in offline (air-gapped) mode")
    if not configured:
        raise Unavailable(why + "no remote tier is configured")
    if sensitive:
        raise Unavailable(why + f"the request holds {sensitive}, and privacy.pii = 'keep_local' keeps such "
                                "requests on this device")


def _kept_local(*, preference: Preference, local_only: bool, sensitive: str, offline: bool, configured: bool,
                model: str) -> Reason | None:
    """The hard rule that keeps the request on this device, most binding first; None if none does."""
    if local_only:
        return Reason("CONFIG_LOCAL_ONLY", "routing.local_only keeps every request on this device")
    if preference == Preference.LOCAL_ONLY:
        return Reason("PREF_LOCAL_ONLY", "the request must not leave this device")
    if sensitive:
        return Reason("PII_KEEP_LOCAL", f"the request holds {sensitive}; privacy.pii keeps it on this device")
    if offline and configured:
        return Reason("OFFLINE_MODE", "air-gapped mode: remote tiers are never contacted")
    if not configured:
        return Reason("LOCAL_ONLY_TIER", f"local model {model!r} is the only tier configured")
    return None


def weigh(decision: Decision, s: Signals, th: Thresholds) -> Decision:
    """Steps 2-6 for a request the hard constraints left open: cost, latency, load,
    difficulty, cascade, in that order. The first step that decides wins; each step
    that applies adds a reason. Remote first means the local model is still the
    fallback; local first means remote tiers take over if the local queue is full."""
    if not decision.open_choice:
        return decision
    remote = tuple(t for t in decision.tiers if t != Tier.LOCAL)
    reasons = [r for r in decision.reasons if r.code != "CHAIN"]

    def go(placed: Placement) -> Decision:
        code, detail, where = placed
        if where == "remote":
            return Decision(decision.model, remote + LOCAL, tuple(reasons + [Reason(code, detail)]))
        return Decision(decision.model, LOCAL + remote, tuple(reasons + [Reason(code, detail)]),
                        cascade=where == "cascade")

    for step in (_cost, _latency, _load):
        if (placed := step(s, th, reasons)) is not None:
            return go(placed)
    return go(_difficulty(s, th))


# A step's placement: (code, detail, where: remote | local | cascade). A step returns None
# to pass to the next one; it may add a reason without deciding.
Placement = tuple[str, str, str]
Step = Placement | None


def _cost(s: Signals, th: Thresholds, reasons: list[Reason]) -> Step:
    if not s.remote_affordable:
        return "COST_REMOTE_UNAFFORDABLE", "every remote candidate is over a cost ceiling or budget", "local"
    return None


def _latency(s: Signals, th: Thresholds, reasons: list[Reason]) -> Step:
    if not s.max_latency_ms or s.local_predicted_s is None:
        return None
    ceiling, local, remote = s.max_latency_ms / 1000, s.local_predicted_s, s.remote_predicted_s
    if local <= ceiling:
        reasons.append(Reason("LATENCY_LOCAL_OK", f"local predicted {local:.2f}s <= ceiling {ceiling:.2f}s"))
        return None
    if remote is None or remote <= ceiling or remote < local:
        remote_txt = "unknown" if remote is None else f"{remote:.2f}s"
        return ("LATENCY_LOCAL_TOO_SLOW", f"local predicted {local:.2f}s > ceiling {ceiling:.2f}s; remote {remote_txt}",
                "remote")
    reasons.append(Reason("LATENCY_BOTH_OVER", f"local {local:.2f}s and remote {remote:.2f}s both exceed "
                                               f"{ceiling:.2f}s; local is faster"))
    return None


def _load(s: Signals, th: Thresholds, reasons: list[Reason]) -> Step:
    if s.queue_depth >= th.max_queue_depth:
        return "LOAD_QUEUE", f"{s.queue_depth} requests wait for the local model (threshold {th.max_queue_depth})", "remote"
    now, profiled = s.local_tps_now, s.local_tps_profiled
    if now and profiled and profiled / now >= th.local_slowdown:
        # Another program's CPU (or heat, or a neighbour VM) matters when it slows the model.
        return ("LOAD_LOCAL_SLOW", f"the local model generates {now:.0f} tok/s, {profiled / now:.1f}x slower "
                                   f"than the {profiled:.0f} tok/s profiled (threshold {th.local_slowdown:g}x)", "remote")
    if s.memory_percent is not None and s.memory_percent >= th.memory_percent:
        return "LOAD_MEMORY", f"memory at {s.memory_percent:.0f}% (threshold {th.memory_percent:.0f}%)", "remote"
    if s.on_battery and s.battery_percent is not None and s.battery_percent <= th.battery_percent:
        return "LOAD_BATTERY", f"on battery at {s.battery_percent:.0f}% (threshold {th.battery_percent:.0f}%)", "remote"
    if s.thermal_throttled:
        return "LOAD_THERMAL", "a temperature sensor is at or above its high mark", "remote"
    return None


def _difficulty(s: Signals, th: Thresholds) -> Placement:
    """Steps 5 and 6, difficulty then the cascade: always decides."""
    if s.difficulty is None:
        return "DEFAULT_LOCAL", "no signal calls for a remote tier; the local model is cheapest", "local"
    if s.difficulty >= th.difficulty:
        return "DIFFICULTY_HIGH", f"difficulty {s.difficulty:.2f} >= {th.difficulty:.2f}{th.source}", "remote"
    if th.cascade and s.difficulty >= th.cascade_band:
        return ("CASCADE_ARMED", f"difficulty {s.difficulty:.2f} is uncertain (>= {th.cascade_band:.2f}): answer "
                                 "locally, escalate if the local model is not confident", "cascade")
    return "DIFFICULTY_LOW", f"difficulty {s.difficulty:.2f} < {th.difficulty:.2f}{th.source}", "local"
