"""The hardware profiler: structure, units and sanity, never speed (the box is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edge.catalog import load_manifest
from edge.profiler import (
    FASTEST_MARK,
    CpuInfo,
    GpuInfo,
    HardwareProfile,
    ModelProfile,
    ThreadResult,
    collect_hardware,
    ensure_profile,
    format_table,
    hardware_fingerprint,
    load_profile,
    measure_bandwidth_gbps,
    parse_cpuinfo,
    parse_nvidia_smi,
    profile_model,
    profile_path,
    save_profile,
    thread_candidates,
)

X86_CPUINFO = """\
processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl \
avx512_bf16 avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8 arch_perfmon
bugs		: spectre_v1

processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse
"""

ARM_CPUINFO = """\
processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc \
dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 i8mm bf16
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd4f
CPU revision	: 1
"""

NVIDIA_SMI = "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\nNVIDIA A10, [N/A], 535.1\ngarbage line\n\n"


def _spec():
    manifest = load_manifest()
    return manifest.get(manifest.default)


def _synthetic(**overrides: object) -> ModelProfile:
    base = ModelProfile(
        name="m", model_path="/x/m.gguf", sha256="ab" * 32, model_bytes=1000, fingerprint="f" * 16,
        llama_version="0.3.36", prompt_tps=200.0, gen_tps=50.0, best_threads=2, ttft_ms=40.0, load_s=0.1,
        warmup_s=0.1, rss_bytes=10, rss_load_bytes=5, bandwidth_gbps=10.0, roofline_tps=1e7, roofline_fraction=5e-6,
        by_threads=[ThreadResult(1, 100.0, 30.0, 2), ThreadResult(2, 200.0, 50.0, 2)], prompt_tokens=100,
        gen_tokens=32, repeats=2, truncated=False, truncated_reason="", budget_s=8.0, elapsed_s=5.0,
        measured_at=1.0)
    return replace(base, **overrides)  # type: ignore[arg-type]


# -- hardware --------------------------------------------------------------------------------

def test_hardware_profile_fields_have_the_right_types() -> None:
    hw = collect_hardware(bandwidth=False)
    assert isinstance(hw, HardwareProfile)
    assert len(hw.fingerprint) == 16 and int(hw.fingerprint, 16) >= 0
    assert isinstance(hw.logical_cores, int) and hw.logical_cores >= 1
    assert hw.physical_cores is None or 1 <= hw.physical_cores <= hw.logical_cores
    assert hw.cpu_model is None or (isinstance(hw.cpu_model, str) and hw.cpu_model)
    assert hw.isa is None or all(isinstance(f, str) for f in hw.isa)
    assert isinstance(hw.ram_total_bytes, int) and hw.ram_total_bytes > 2**20
    assert isinstance(hw.ram_available_bytes, int) and 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.llama_gpu_offload in (True, False)
    assert hw.gpus is None or all(isinstance(g, GpuInfo) for g in hw.gpus)
    assert hw.battery_percent is None or 0 <= hw.battery_percent <= 100
    assert hw.battery_plugged in (None, True, False)
    assert hw.temperature_max_c is None or isinstance(hw.temperature_max_c, float)
    assert hw.temperature_high in (None, True, False)
    assert hw.bandwidth_gbps is None  # not asked for
    d = hw.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["fingerprint"] == hw.fingerprint


def test_missing_cpuinfo_gives_none_not_an_exception(tmp_path: Path) -> None:
    hw = collect_hardware(bandwidth=False, cpuinfo_path=tmp_path / "no-such-cpuinfo")
    assert hw.isa is None
    assert hw.fingerprint and hw.logical_cores


def test_x86_cpuinfo_parsing() -> None:
    info = parse_cpuinfo(X86_CPUINFO)
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.isa == ("avx", "avx2", "avx_vnni", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                        "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def test_arm_cpuinfo_parsing() -> None:
    info = parse_cpuinfo(ARM_CPUINFO)
    assert info.isa == ("neon", "fp16", "dotprod", "i8mm", "sve", "sve2", "bf16")
    assert info.model == "ARM implementer 0x41 part 0xd4f"
    # 32-bit ARM says "neon", and names the processor.
    old = parse_cpuinfo("Processor\t: ARMv7 Processor rev 4 (v7l)\nFeatures\t: half thumb fastmult vfp neon\n")
    assert old == CpuInfo(model="ARMv7 Processor rev 4 (v7l)", isa=("neon",))


def test_cpuinfo_without_flags_is_unknown_not_empty() -> None:
    assert parse_cpuinfo("") == CpuInfo(model=None, isa=None)
    assert parse_cpuinfo("processor\t: 0\nflags\t\t: fpu sse\n") == CpuInfo(model=None, isa=())


def test_nvidia_smi_parsing() -> None:
    assert parse_nvidia_smi(NVIDIA_SMI) == [GpuInfo("NVIDIA H100 80GB HBM3", 81559, "550.54.15"),
                                            GpuInfo("NVIDIA A10", None, "535.1")]
    assert parse_nvidia_smi("") == []


def test_fingerprint_is_stable_and_follows_each_input() -> None:
    assert collect_hardware(bandwidth=False).fingerprint == collect_hardware(bandwidth=False).fingerprint
    base = dict(cpu_model="AMD EPYC", logical_cores=2, isa=["avx2", "avx"], ram_total_bytes=24 * 2**30,
                gpu_names=[])
    fp = hardware_fingerprint(**base)  # type: ignore[arg-type]
    assert fp == hardware_fingerprint(**{**base, "isa": ["avx", "avx2"]})  # type: ignore[arg-type]
    assert fp == hardware_fingerprint(**{**base, "ram_total_bytes": 24 * 2**30 - 300 * 2**20})  # type: ignore[arg-type]
    for change in ({"cpu_model": "AMD EPYC 9654"}, {"logical_cores": 4}, {"isa": ["avx"]},
                   {"ram_total_bytes": 32 * 2**30}, {"gpu_names": ["NVIDIA H100"]}):
        assert hardware_fingerprint(**{**base, **change}) != fp, change  # type: ignore[arg-type]


def test_bandwidth_is_positive() -> None:
    gbps = measure_bandwidth_gbps(size_bytes=64 << 20, max_s=0.3, repeats=3)
    assert gbps is not None and gbps > 0


def test_thread_candidates_cover_physical_and_logical() -> None:
    assert thread_candidates(2, 2) == [2, 1]
    assert sorted(thread_candidates(4, 8)) == [1, 2, 3, 4, 8]
    assert thread_candidates(4, 8)[:2] == [4, 8]  # the daemon's default first
    assert thread_candidates(None, None) == [1]


# -- model profile (real model) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_profile(default_model_path: Path) -> ModelProfile:
    bandwidth = measure_bandwidth_gbps(size_bytes=128 << 20, max_s=0.5)
    return profile_model(default_model_path, sha256=_spec().sha256, name=_spec().name, budget_s=8.0,
                         candidates=[1, 2], bandwidth_gbps=bandwidth)


@pytest.mark.model
def test_short_model_profile_is_sane(short_profile: ModelProfile, default_model_path: Path) -> None:
    p = short_profile
    assert p.name == _spec().name and p.sha256 == _spec().sha256
    assert p.model_bytes == default_model_path.stat().st_size
    assert p.prompt_tps > 0 and p.gen_tps > 0 and p.ttft_ms > 0 and p.load_s > 0
    assert p.rss_bytes > 0
    assert p.best_threads in (1, 2)
    assert {t.threads for t in p.by_threads} <= {1, 2} and 1 in {t.threads for t in p.by_threads}
    # The best thread count serves a typical chat turn fastest (prompt and answer together).
    from edge.profiler.measure import TYPICAL_GEN, TYPICAL_PROMPT
    from edge.profiler.profile import fastest_threads

    best = next(t for t in p.by_threads if t.threads == p.best_threads)
    assert p.best_threads == fastest_threads(p.by_threads, TYPICAL_PROMPT, TYPICAL_GEN)
    assert (best.gen_tps, best.prompt_tps) == (p.gen_tps, p.prompt_tps)
    assert p.roofline_tps is not None and p.roofline_fraction is not None
    assert 0 < p.roofline_fraction < 1.5
    assert p.prompt_tokens == 100 and p.gen_tokens > 0
    assert p.truncated == bool(p.truncated_reason)
    assert json.loads(json.dumps(p.to_dict())) == p.to_dict()


@pytest.mark.model
def test_a_tiny_budget_truncates_but_still_measures(default_model_path: Path) -> None:
    p = profile_model(default_model_path, sha256=_spec().sha256, budget_s=0.01, candidates=[1, 2])
    assert p.truncated and "budget" in p.truncated_reason
    assert [t.threads for t in p.by_threads] == [1] and p.best_threads == 1
    assert p.gen_tps > 0 and p.prompt_tps > 0
    assert p.roofline_fraction is None  # no bandwidth given


# -- persistence and online updates ---------------------------------------------------------------

@pytest.mark.model
def test_persistence_round_trip_is_keyed(short_profile: ModelProfile, tmp_path: Path) -> None:
    path = save_profile(short_profile, tmp_path)
    assert path == profile_path(short_profile.fingerprint, short_profile.sha256, short_profile.llama_version, tmp_path)
    key = (short_profile.fingerprint, short_profile.sha256, short_profile.llama_version)
    loaded = load_profile(*key, tmp_path)
    assert loaded is not None and loaded.to_dict() == short_profile.to_dict()
    assert load_profile("0" * 16, key[1], key[2], tmp_path) is None
    assert load_profile(key[0], "cd" * 32, key[2], tmp_path) is None
    assert load_profile(key[0], key[1], "9.9.9", tmp_path) is None


def test_a_corrupt_or_mislabelled_file_is_a_miss(tmp_path: Path) -> None:
    p = _synthetic()
    path = save_profile(p, tmp_path)
    path.write_text("{not json", encoding="utf-8")
    assert load_profile(p.fingerprint, p.sha256, p.llama_version, tmp_path) is None
    # A file under one key whose content records another key is stale, not a hit.
    other = save_profile(replace(p, llama_version="0.0.1"), tmp_path)
    other.replace(path)
    assert load_profile(p.fingerprint, p.sha256, p.llama_version, tmp_path) is None


@pytest.mark.model
def test_ensure_profile_measures_once_then_hits(default_model_path: Path, tmp_path: Path) -> None:
    first = ensure_profile(default_model_path, _spec().sha256, budget_s=0.5, directory=tmp_path)
    assert list(tmp_path.glob("*.json")) and first.gen_tps > 0
    again = ensure_profile(default_model_path, _spec().sha256, budget_s=0.5, directory=tmp_path)
    assert again.to_dict() == first.to_dict()


# -- output ------------------------------------------------------------------------------------

@pytest.mark.model
def test_format_table_shows_model_and_fastest(short_profile: ModelProfile) -> None:
    broken = {"name": "broken", "model_path": "/x", "sha256": "", "error": "boom"}
    result = {"hardware": collect_hardware(bandwidth=False).to_dict(), "models": [short_profile.to_dict(), broken]}
    table = format_table(result)
    assert short_profile.name in table and "error: boom" in table
    marked = [line for line in table.splitlines() if FASTEST_MARK in line]
    assert len(marked) == 1 and short_profile.name in marked[0]
    assert marked[0].split()[1] == str(short_profile.best_threads)


def test_format_table_survives_unknown_hardware() -> None:
    hw = {k: None for k in HardwareProfile.__dataclass_fields__}
    table = format_table({"hardware": hw, "models": [_synthetic().to_dict()]})
    assert "unknown" in table and FASTEST_MARK in table


@pytest.mark.model
def test_module_cli_prints_json(default_model_path: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edge.profiler", "--json", "--budget", "8",
                           "--profiles-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["hardware"]["fingerprint"] and result["hardware"]["bandwidth_gbps"] > 0
    [model] = result["models"]
    assert model["name"] == _spec().name and model["gen_tps"] > 0
    assert model["saved_to"] and Path(model["saved_to"]).parent == tmp_path


# -- profiles measured under load, the thread count for the requests, stopping ---------------------

def test_the_thread_count_serves_the_request_shape_not_the_generation_rate_alone() -> None:
    """The field case: a profile taken under load had 1 thread ahead on generation, while
    2 threads were far faster on prompts; for a long prompt 2 threads answer sooner."""
    from edge.profiler.profile import fastest_threads

    rates = [ThreadResult(1, prompt_tps=184.0, gen_tps=63.0, runs=2), ThreadResult(2, prompt_tps=300.0, gen_tps=55.0,
                                                                                    runs=2)]
    assert max(rates, key=lambda t: t.gen_tps).threads == 1  # what the generation rate alone picked
    assert fastest_threads(rates, prompt_tokens=1585, gen_tokens=64) == 2
    assert fastest_threads(rates, prompt_tokens=10, gen_tokens=500) == 1
    assert _synthetic(by_threads=rates).best_threads_for(256, 128) == 2


def test_noise_names_what_made_a_profile_unreliable() -> None:
    from edge.profiler.measure import _LoadMeter, _noise, _Run

    calm, busy = _LoadMeter(), _LoadMeter()
    calm.other, calm.steal = [0.02, 0.03], [0.0, 0.0]
    busy.other, busy.steal = [0.6, 0.5], [0.1, 0.08]
    steady = {2: [_Run(100, 0.5, 31, 0.5, 1.0), _Run(100, 0.5, 31, 0.52, 1.0)]}
    jumpy = {2: [_Run(100, 0.5, 31, 0.5, 1.0), _Run(100, 0.5, 31, 1.0, 1.5)]}
    assert _noise(calm, steady)[3] == ""
    why = _noise(busy, jumpy)[3]
    assert "other programs used 55% of the CPUs" in why and "CPU steal 9%" in why and "repeats differed" in why


def test_the_load_meter_sees_another_process_burning_cpu() -> None:
    import time as _time

    from edge.profiler.measure import _LoadMeter

    meter = _LoadMeter()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _time.sleep(0.3)
        with meter:
            _time.sleep(1.0)  # this process idles; the burner keeps one CPU busy
    finally:
        burner.kill()
        burner.wait()
    cpus = __import__("psutil").cpu_count() or 1
    assert meter.other[0] > 0.5 / cpus  # at least half of one CPU, as a share of all of them


def test_a_profile_stops_at_the_next_token_when_cancelled(default_model_path: Path) -> None:
    """The daemon's shutdown sets the event; the profile (in a worker thread) must not run on."""
    import threading

    from edge.profiler import ProfileCancelled

    cancel = threading.Event()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        cancel.set()  # the first line comes after the warm-up, before the first timed run

    with pytest.raises(ProfileCancelled):
        profile_model(default_model_path, sha256=_spec().sha256, budget_s=8.0, log=log, cancel=cancel)
    assert len(lines) == 1 and "loaded" in lines[0]  # no timed run was reported


def test_a_noisy_profile_is_measured_again_when_idle_and_the_calm_one_applied() -> None:
    import asyncio

    from edge.profiler.remeasure import remeasure_when_idle

    measured = [_synthetic(noisy=True, noise_reason="other programs used 60% of the CPUs"),
                _synthetic(noisy=False, gen_tps=80.0)]
    idle = iter([False, True, True])  # busy at the first look: no measurement then
    applied: list[ModelProfile] = []

    async def measure() -> ModelProfile:
        return measured.pop(0)

    async def is_idle() -> bool:
        return next(idle)

    async def apply(p: ModelProfile) -> None:
        applied.append(p)

    got = asyncio.run(remeasure_when_idle(measure=measure, idle=is_idle, apply=apply, name="m", wait_s=0.0,
                                          tries=5))
    assert got is not None and not got.noisy and got.gen_tps == 80.0 and applied == [got] and measured == []
