"""What the machine did while the bench ran: other programs' CPU, steal, heat, clocks, memory.

One thread samples every `interval_s` (half a second): the whole machine's CPU time
from /proc/stat (through psutil), this process's and its children's (the daemon the
bench started is one of them), the hypervisor's steal, the hottest temperature sensor,
the CPU clock, and the resident memory of a watched process. A section asks for the
samples between two marks; `noise()` turns them into a verdict with the same
thresholds as the start-up profile (edge.profiler.measure): a figure measured while
other programs held a quarter of the CPUs, or the hypervisor took 5%, is marked
unreliable with the reason, never written as if the box had been idle.

Every probe degrades to None: a VM without sensors or cpufreq says so in the report.
"""

from __future__ import annotations

import glob
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edge.profiler.measure import NOISY_OTHER_LOAD, NOISY_STEAL, _busy

__all__ = ["Sample", "Sampler", "noise", "read_throttle_count", "cpu_max_freq_mhz"]

_CPU_SYS = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class Sample:
    """One interval: `other` and `steal` as shares of all CPUs (0-1) over the interval
    that ended at `t` (seconds since the sampler started); temperature in °C, clock in
    MHz (mean over CPUs), memory in bytes; None where the platform has no reading."""

    t: float
    other: float
    steal: float
    temp_c: float | None
    freq_mhz: float | None
    watched_rss: int | None
    own_rss: int


def _temp_max() -> float | None:
    try:
        temps = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except Exception:  # noqa: BLE001 - sensor drivers fail in many ways; a missing reading is not an error
        return None
    readings = [float(t.current) for entries in (temps or {}).values() for t in entries if t.current]
    return max(readings) if readings else None


def _cpufreq_mhz(name: str) -> list[float]:
    """Each CPU's cpufreq figure `name` (kHz in sysfs) in MHz; [] where cpufreq is absent."""
    values = []
    for path in glob.glob(str(_CPU_SYS / "cpu[0-9]*" / "cpufreq" / name)):
        try:
            values.append(int(Path(path).read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    return values


def _freq_mhz() -> float | None:
    values = _cpufreq_mhz("scaling_cur_freq")
    return statistics.fmean(values) if values else None


def cpu_max_freq_mhz() -> float | None:
    """The highest clock any CPU may run at (cpufreq's cpuinfo_max_freq), or None."""
    values = _cpufreq_mhz("cpuinfo_max_freq")
    return max(values) if values else None


def read_throttle_count() -> int | None:
    """Thermal throttling events so far, all CPUs (x86 thermal_throttle), or None."""
    total, found = 0, False
    for path in glob.glob(str(_CPU_SYS / "cpu[0-9]*" / "thermal_throttle" / "*_throttle_count")):
        try:
            total += int(Path(path).read_text().strip())
            found = True
        except (OSError, ValueError):
            continue
    return total if found else None


class Sampler:
    """Samples the machine on its own thread until `stop()`; `mark()` and `window()` cut
    the samples into sections."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.watched: int | None = None
        self._me = psutil.Process()
        self._ncpu = psutil.cpu_count() or 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edge-bench-sampler", daemon=True)
        self._t0 = time.monotonic()
        self.throttle_start = read_throttle_count()
        self.throttle_end: int | None = None

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.throttle_end = read_throttle_count()

    def watch(self, pid: int | None) -> None:
        """Record this process's resident memory in each sample from now on (None: stop)."""
        self.watched = pid

    def mark(self) -> int:
        return len(self.samples)

    def window(self, start: int, end: int | None = None) -> list[Sample]:
        return list(self.samples[start:end])

    def _tree_cpu(self) -> dict[tuple[int, float], float]:
        """CPU seconds of this process and every descendant, keyed by (pid, start time)."""
        out: dict[tuple[int, float], float] = {}
        try:
            procs = [self._me, *self._me.children(recursive=True)]
        except psutil.Error:
            procs = [self._me]
        for p in procs:
            try:
                t = p.cpu_times()
                out[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                continue
        return out

    def _rss(self, pid: int | None) -> int | None:
        if pid is None:
            return None
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None

    def _loop(self) -> None:
        last_sys, last_tree, last_t = psutil.cpu_times(), self._tree_cpu(), time.monotonic()
        while not self._stop.wait(self.interval_s):
            now_sys, now_tree, now = psutil.cpu_times(), self._tree_cpu(), time.monotonic()
            span = (now - last_t) * self._ncpu
            if span <= 0:
                continue
            ours = sum(v - last_tree.get(k, 0.0) for k, v in now_tree.items())
            other = (_busy(now_sys) - _busy(last_sys) - ours) / span
            steal = (getattr(now_sys, "steal", 0.0) - getattr(last_sys, "steal", 0.0)) / span
            self.samples.append(Sample(
                t=round(now - self._t0, 3), other=max(0.0, min(1.0, other)), steal=max(0.0, min(1.0, steal)),
                temp_c=_temp_max(), freq_mhz=_freq_mhz(), watched_rss=self._rss(self.watched),
                own_rss=self._rss(os.getpid()) or 0))
            last_sys, last_tree, last_t = now_sys, now_tree, now


def noise(samples: list[Sample]) -> dict[str, Any]:
    """Other programs' mean CPU share and the mean steal over `samples`, and whether the
    figures measured meanwhile can be trusted (with the reason when not)."""
    if not samples:
        return {"other_cpu": None, "steal": None, "samples": 0, "reliable": True, "reason": ""}
    other = statistics.fmean(s.other for s in samples)
    steal = statistics.fmean(s.steal for s in samples)
    why = [f"other programs used {other:.0%} of the CPUs" if other > NOISY_OTHER_LOAD else "",
           f"CPU steal {steal:.0%}" if steal > NOISY_STEAL else ""]
    reason = "; ".join(w for w in why if w)
    return {"other_cpu": round(other, 3), "steal": round(steal, 3), "samples": len(samples),
            "reliable": not reason, "reason": reason}
