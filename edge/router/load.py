"""Device load: CPU, memory, battery and thermal state, sampled cheaply.

psutil's cpu_percent(interval=None) compares with the previous call, so sampling
costs microseconds. Battery and temperature read sysfs files: `refresh()` reads them
(blocking; the runtime calls it on a thread every few seconds, since they change
slowly) and `sample()` only returns what the last refresh saw, so the event loop
never touches a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["CALM", "FixedLoad", "LoadSample", "LoadMonitor", "LoadSource"]


@dataclass(frozen=True)
class LoadSample:
    cpu_percent: float | None  # other programs' share of all cores, 0-100
    memory_percent: float | None
    battery_percent: float | None
    on_battery: bool
    thermal_throttled: bool


# What the policy sees with routing.device_load off: no load signal at all.
CALM = LoadSample(cpu_percent=None, memory_percent=None, battery_percent=None, on_battery=False,
                  thermal_throttled=False)


class LoadSource(Protocol):
    """Where the policy's load signals come from."""

    REFRESH_EVERY_S: float

    def sample(self) -> LoadSample:
        """Cheap: called on the event loop for each routed request."""

    def refresh(self) -> None:
        """Blocking: re-read slow sensors (called on a thread every REFRESH_EVERY_S)."""


class FixedLoad:
    """Always the same sample: for tests and benchmarks that must not depend on what
    else the machine is doing."""

    REFRESH_EVERY_S = 3600.0

    def __init__(self, sample: LoadSample = CALM) -> None:
        self._sample = sample

    def sample(self) -> LoadSample:
        return self._sample

    def refresh(self) -> None:
        pass


class LoadMonitor:
    REFRESH_EVERY_S = 5.0  # battery and temperature: how often the runtime calls refresh()

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._battery: tuple[float | None, bool] = (None, False)
        self._hot = False
        self._me = psutil.Process()
        self._ncpu = psutil.cpu_count() or 1
        psutil.cpu_percent(interval=None)  # prime both comparisons
        self._me.cpu_percent(interval=None)

    def refresh(self) -> None:
        """Blocking: read battery and temperature sensors (sysfs)."""
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
        """Cheap, for the event loop: CPU and memory now, sensors as last refreshed."""
        ps = self._psutil
        # Other programs' CPU use: the local model's own threads must not count as
        # pressure, or every busy local generation would push traffic remote.
        others = max(0.0, ps.cpu_percent(interval=None) - self._me.cpu_percent(interval=None) / self._ncpu)
        return LoadSample(cpu_percent=others, memory_percent=ps.virtual_memory().percent,
                          battery_percent=self._battery[0], on_battery=self._battery[1], thermal_throttled=self._hot)
