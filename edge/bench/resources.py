"""The box itself: its fingerprint (what it is, what edge and llama.cpp were built as),
and what the run cost it: memory, heat, clocks, throttling, other programs' load."""

from __future__ import annotations

import platform
import socket
import sys
from typing import Any

from edge.bench.sampler import Sample, Sampler, cpu_max_freq_mhz

__all__ = ["fingerprint", "sensors", "timeline", "memory"]


def fingerprint(hw: Any) -> dict[str, Any]:
    """What decides the numbers: the hardware (edge.profiler's HardwareProfile and its
    fingerprint), the OS, Python, edge, llama-cpp-python and the llama.cpp build flags
    (`llama_print_system_info`), and whether that build can offload to a GPU."""
    import llama_cpp

    from edge import __version__

    return {
        "id": hw.fingerprint, "host": socket.gethostname(), "cpu_model": hw.cpu_model,
        "physical_cores": hw.physical_cores, "logical_cores": hw.logical_cores,
        "isa": list(hw.isa) if hw.isa is not None else None, "ram_total_bytes": hw.ram_total_bytes,
        "bandwidth_gbps": round(hw.bandwidth_gbps, 2) if hw.bandwidth_gbps else None,
        "os": platform.platform(), "machine": hw.machine, "python": platform.python_version(),
        "python_implementation": sys.implementation.name, "edge_version": __version__,
        "llama_cpp_python": llama_cpp.__version__, "llama_system_info": hw.llama_system_info,
        "gpu_offload_supported": hw.llama_gpu_offload,
        "gpus": [g.name for g in hw.gpus] if hw.gpus else [],
        "battery_percent": hw.battery_percent,
    }


def _clock(samples: list[Sample]) -> dict[str, Any] | None:
    freqs = [s.freq_mhz for s in samples if s.freq_mhz is not None]
    if not freqs:
        return None
    max_allowed = cpu_max_freq_mhz()
    return {"min": round(min(freqs)), "max": round(max(freqs)), "max_allowed": round(max_allowed) if max_allowed else None}


def sensors(samples: list[Sample], sampler: Sampler) -> dict[str, Any]:
    """Temperature and clock over the run, and thermal throttling events; each says
    plainly when the box has no such sensor (a VM usually has none). `throttled`: the
    kernel counted throttling events, or the clock fell below 80% of its maximum while a
    sensor read 80 °C or more."""
    temps = [s.temp_c for s in samples if s.temp_c is not None]
    clock = _clock(samples)
    start, end = sampler.throttle_start, sampler.throttle_end
    events = (end - start) if start is not None and end is not None else None
    slowed = bool(clock and clock["max_allowed"] and clock["min"] < 0.8 * clock["max_allowed"])
    return {
        "temperature_c": {"min": min(temps), "max": max(temps)} if temps else None,
        "temperature_note": "" if temps else "no sensors: psutil found no temperature readings",
        "clock_mhz": clock, "clock_note": "" if clock else "no cpufreq: the kernel exposes no CPU clock readings",
        "throttle_events": events,
        "throttle_note": "" if start is not None else "no thermal_throttle counters on this kernel",
        "throttled": bool(events) or (slowed and bool(temps) and max(temps) >= 80),
    }


def memory(samples: list[Sample]) -> dict[str, Any]:
    """The largest resident memory the watched process (the daemon) and this process reached."""
    watched = [s.watched_rss for s in samples if s.watched_rss]
    own = [s.own_rss for s in samples if s.own_rss]
    return {"daemon_peak_bytes": max(watched) if watched else None, "bench_peak_bytes": max(own) if own else None}


def timeline(samples: list[Sample], max_points: int = 240) -> dict[str, list[Any]]:
    """Columns for the report's plot, thinned to at most `max_points` samples."""
    step = max(1, -(-len(samples) // max_points))
    picked = samples[::step]
    return {
        "t_s": [s.t for s in picked],
        "other_cpu": [round(s.other, 3) for s in picked],
        "steal": [round(s.steal, 3) for s in picked],
        "temp_c": [s.temp_c for s in picked],
        "freq_mhz": [round(s.freq_mhz) if s.freq_mhz else None for s in picked],
        "daemon_rss_mb": [round(s.watched_rss / 1e6, 1) if s.watched_rss else None for s in picked],
    }
