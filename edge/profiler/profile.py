"""A model's measured speed on this hardware, refined by real traffic, and its cache on disk.

A profile is stored as JSON under `<user cache>/edge/profiles/` (or a given
directory), one file per (hardware fingerprint, model sha256, llama-cpp-python
version): a change to any of the three, a new CPU, a re-quantised model or a new
llama.cpp, is a miss and asks for a fresh measurement.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs

__all__ = [
    "SCHEMA_VERSION",
    "ModelProfile",
    "ThreadResult",
    "default_profiles_dir",
    "profile_path",
    "load_profile",
    "save_profile",
]

SCHEMA_VERSION = 1
_UNSAFE = re.compile(r"[^0-9A-Za-z._-]")


@dataclass
class ThreadResult:
    """Median rates over `runs` timed runs at one thread count (tokens per second)."""

    threads: int
    prompt_tps: float
    gen_tps: float
    runs: int


@dataclass
class ModelProfile:
    """One model's speed on one machine.

    Units: rates in tokens/s, `ttft_ms` in milliseconds, `load_s`/`warmup_s`/
    `elapsed_s`/`budget_s` in seconds, sizes in bytes, `bandwidth_gbps` in 1e9 B/s,
    `measured_at`/`updated_at` in Unix seconds. `prompt_tps` and `gen_tps` are the
    measurement at `best_threads`; the daemon seeds its live predictor with them
    (edge.router.estimates.LocalEstimate, the one place latency is predicted).

    `rss_bytes` is the process's resident memory added by loading the model and
    running one warm-up generation: llama.cpp maps the weights with mmap, so they
    become resident only when first used (`rss_load_bytes` is the constructor's share
    alone). It undercounts when this process already had the file mapped.

    `roofline_tps` = memory bandwidth / model file bytes, the rate at which every
    weight can be streamed once per token; `roofline_fraction` = `gen_tps` as
    measured / that (None when no bandwidth was measured).
    """

    name: str
    model_path: str
    sha256: str
    model_bytes: int
    fingerprint: str
    llama_version: str
    prompt_tps: float
    gen_tps: float
    best_threads: int
    ttft_ms: float
    load_s: float
    warmup_s: float
    rss_bytes: int
    rss_load_bytes: int
    bandwidth_gbps: float | None
    roofline_tps: float | None
    roofline_fraction: float | None
    by_threads: list[ThreadResult]
    prompt_tokens: int
    gen_tokens: int
    repeats: int
    truncated: bool
    truncated_reason: str
    budget_s: float
    elapsed_s: float
    measured_at: float
    observations: int = 0
    updated_at: float | None = None
    n_gpu_layers: int = 0
    # Measured while something else ran: other programs' share of the CPU and the
    # hypervisor's steal during the timed runs, and the spread of repeated runs. A noisy
    # profile is applied for now and measured again when the machine is idle.
    other_load: float = 0.0       # mean share of all CPUs busy with other processes (0-1)
    steal: float = 0.0            # mean share of CPU time stolen by the hypervisor (0-1)
    spread: float = 0.0           # largest (max - min) / median of gen_tps over a thread count's repeats
    noisy: bool = False
    noise_reason: str = ""

    def best_threads_for(self, prompt_tokens: float, gen_tokens: float) -> int:
        """fastest_threads over this profile's measurements (its best_threads if it has none)."""
        return fastest_threads(self.by_threads, prompt_tokens, gen_tokens) if self.by_threads else self.best_threads

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; `from_dict(to_dict())` round-trips."""
        return {"schema": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelProfile:
        """Raises KeyError/TypeError/ValueError when `data` is not a profile of this schema."""
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"profile schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["by_threads"] = [ThreadResult(**t) for t in data["by_threads"]]
        return cls(**kwargs)


def fastest_threads(by_threads: list[ThreadResult], prompt_tokens: float, gen_tokens: float) -> int:
    """The thread count that serves a request of this shape fastest: prompt tokens at the
    prompt rate plus generated tokens at the generation rate (a rate alone can pick 1
    thread for generation while 2 threads halve the wait for a long prompt)."""
    def seconds(t: ThreadResult) -> float:
        if t.prompt_tps <= 0 or t.gen_tps <= 0:
            return float("inf")
        return prompt_tokens / t.prompt_tps + gen_tokens / t.gen_tps
    return min(by_threads, key=seconds).threads


def default_profiles_dir() -> Path:
    """`<user cache>/edge/profiles`."""
    return Path(platformdirs.user_cache_dir("edge")) / "profiles"


def profile_path(fingerprint: str, sha256: str, llama_version: str, directory: Path | None = None) -> Path:
    """The file that holds the profile for this key (it may not exist)."""
    # The version comes from a package and could hold characters a file name must not.
    parts = (_UNSAFE.sub("_", fingerprint), _UNSAFE.sub("_", sha256), _UNSAFE.sub("_", llama_version))
    return (directory or default_profiles_dir()) / "{}-{}-llama_cpp-{}.json".format(*parts)


def load_profile(fingerprint: str, sha256: str, llama_version: str,
                 directory: Path | None = None) -> ModelProfile | None:
    """The stored profile for exactly this key, or None (absent, unreadable, another
    schema, or a file whose recorded key differs: a stale cache is a miss, not an error)."""
    path = profile_path(fingerprint, sha256, llama_version, directory)
    try:
        profile = ModelProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (profile.fingerprint, profile.sha256, profile.llama_version) != (fingerprint, sha256, llama_version):
        return None
    return profile


def save_profile(profile: ModelProfile, directory: Path | None = None) -> Path:
    """Write atomically under the profile's own key; returns the path. Raises OSError
    when the directory cannot be created or written."""
    path = profile_path(profile.fingerprint, profile.sha256, profile.llama_version, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: the daemon and `edge profile` may save the same key at once.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(profile.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path
