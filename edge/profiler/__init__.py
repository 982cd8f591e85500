"""The hardware profiler: what this machine is, and how fast each local model runs on it.

- `collect_hardware()`: CPU, ISA, RAM, GPUs, battery, temperatures, memory bandwidth,
  and the hardware fingerprint; fields the platform cannot provide are None.
- `profile_model()` / `ensure_profile()`: load time, resident memory, prompt and
  generation rates per thread count, TTFT and the bandwidth roofline, within a budget;
  `ensure_profile` reuses the cached profile for (hardware, model sha256, llama-cpp-python).
- `run_profile()` / `format_table()` / `main()`: `edge profile` and `python -m edge.profiler`.

Importing this package loads neither llama.cpp nor numpy.
"""

from __future__ import annotations

from edge.profiler.hardware import (
    CpuInfo,
    GpuInfo,
    HardwareProfile,
    collect_hardware,
    hardware_fingerprint,
    measure_bandwidth_gbps,
    parse_cpuinfo,
    parse_nvidia_smi,
)
from edge.profiler.measure import (
    PROMPT_TOKENS,
    SHORT_BUDGET_S,
    ProfileCancelled,
    ensure_profile,
    profile_model,
    thread_candidates,
)
from edge.profiler.profile import (
    SCHEMA_VERSION,
    ModelProfile,
    ThreadResult,
    default_profiles_dir,
    load_profile,
    profile_path,
    save_profile,
)
from edge.profiler.report import FASTEST_MARK, format_table, main, run_profile

__all__ = [
    "FASTEST_MARK",
    "PROMPT_TOKENS",
    "SCHEMA_VERSION",
    "SHORT_BUDGET_S",
    "CpuInfo",
    "GpuInfo",
    "HardwareProfile",
    "ModelProfile",
    "ProfileCancelled",
    "ThreadResult",
    "collect_hardware",
    "default_profiles_dir",
    "ensure_profile",
    "format_table",
    "hardware_fingerprint",
    "load_profile",
    "main",
    "measure_bandwidth_gbps",
    "parse_cpuinfo",
    "parse_nvidia_smi",
    "profile_model",
    "profile_path",
    "run_profile",
    "save_profile",
    "thread_candidates",
]
