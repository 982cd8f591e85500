"""Signals: the numbers the policy weighs. Computed by the engine, decided on by edge.router.policy.

Every field is a measurement or a prediction with its unit; None means "not known"
(no profile yet, no classifier installed, no sensor), and the policy skips a step
whose signal is unknown rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Signals", "Thresholds"]


@dataclass(frozen=True)
class Signals:
    # latency
    max_latency_ms: int = 0                   # the caller's ceiling; 0 = none
    local_predicted_s: float | None = None    # queue wait + prompt/prompt rate + output/generation rate
    remote_predicted_s: float | None = None   # moving average of the first remote candidate's latency
    # cost
    remote_affordable: bool = True            # False: every remote candidate is over a ceiling or budget
    # load
    queue_depth: int = 0
    # The local model's generation rate now (moving average of served requests) and as
    # profiled on this hardware: load counts when it slows the model, whatever causes it.
    local_tps_now: float | None = None
    local_tps_profiled: float | None = None
    memory_percent: float | None = None
    battery_percent: float | None = None
    on_battery: bool = False
    thermal_throttled: bool = False
    # difficulty: estimated probability that the local model answers wrongly
    difficulty: float | None = None


@dataclass(frozen=True)
class Thresholds:
    difficulty: float = 0.5          # at or above: escalate
    cascade_band: float = 0.25       # local decisions with difficulty at or above this are checked
    max_queue_depth: int = 2         # requests waiting for the local model before new ones go remote
    local_slowdown: float = 1.5      # profiled rate / rate now at or above this: the device is loaded
    source: str = ""                 # where the difficulty threshold came from, for the reasons ("" = configured)
    memory_percent: float = 90.0
    battery_percent: float = 20.0    # on battery at or below this: spare the battery, go remote
    cascade: bool = True
