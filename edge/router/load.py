"""Device load: CPU, memory, battery and thermal state, sampled cheaply.

psutil's cpu_percent(interval=None) compares with the previous call, so sampling
costs microseconds; battery and temperature read sysfs files and are cached for a
few seconds, since they change slowly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["LoadSample", "LoadMonitor"]


@dataclass(frozen=True)
class LoadSample:
    cpu_percent: float | None  # other programs' share of all cores, 0-100
    memory_percent: float | None
    battery_percent: float | None
    on_battery: bool
    thermal_throttled: bool


class LoadMonitor:
    def __init__(self, slow_every_s: float = 5.0) -> None:
        import psutil

        self._psutil = psutil
        self._slow_every_s = slow_every_s
        self._slow_at = -1e9
        self._battery: tuple[float | None, bool] = (None, False)
        self._hot = False
        self._me = psutil.Process()
        self._ncpu = psutil.cpu_count() or 1
        psutil.cpu_percent(interval=None)  # prime both comparisons
        self._me.cpu_percent(interval=None)

    def _refresh_slow(self) -> None:
        ps = self._psutil
        try:
            b = ps.sensors_battery() if hasattr(ps, "sensors_battery") else None
            self._battery = (b.percent, not b.power_plugged) if b is not None else (None, False)
        except (OSError, RuntimeError, AttributeError):
            self._battery = (None, False)
        try:
            temps = ps.sensors_temperatures() if hasattr(ps, "sensors_temperatures") else {}
            self._hot = any(t.high and t.current >= t.high for ts in temps.values() for t in ts)
        except (OSError, RuntimeError, AttributeError):
            self._hot = False

    def sample(self) -> LoadSample:
        now = time.monotonic()
        if now - self._slow_at > self._slow_every_s:
            self._slow_at = now
            self._refresh_slow()
        ps = self._psutil
        # Other programs' CPU use: the local model's own threads must not count as
        # pressure, or every busy local generation would push traffic remote.
        others = max(0.0, ps.cpu_percent(interval=None) - self._me.cpu_percent(interval=None) / self._ncpu)
        return LoadSample(cpu_percent=others, memory_percent=ps.virtual_memory().percent,
                          battery_percent=self._battery[0], on_battery=self._battery[1], thermal_throttled=self._hot)
