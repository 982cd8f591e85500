"""`edge profile`: profile the hardware and installed models, print a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.errors import EdgeError, ModelNotFound
from edge.profiler.hardware import collect_hardware
from edge.profiler.measure import profile_model, thread_candidates
from edge.profiler.profile import SCHEMA_VERSION, save_profile

__all__ = ["FASTEST_MARK", "run_profile", "format_table", "main"]

FASTEST_MARK = "* fastest"
DEFAULT_BUDGET_S = 60.0


def run_profile(models: Sequence[tuple[str, Path, str]], *, budget_s: float, json_out: bool,
                directory: Path | None = None, save: bool = True,
                candidates: list[int] | None = None) -> dict[str, Any]:
    """Profile the hardware (bandwidth included), then each (name, path, sha256) within
    `budget_s` seconds per model; returns a JSON-serialisable dict:

        {"schema", "llama_cpp_version", "budget_s_per_model", "hardware": {...},
         "models": [ModelProfile.to_dict() + {"saved_to"} | {"name", "model_path", "sha256", "error"}]}

    `json_out=False` reports progress lines on stderr; True keeps stderr quiet for a
    machine reader. Profiles are saved to the profile cache (`directory`, default the
    user cache) unless `save=False`, so the daemon starts from this fuller measurement.
    A model that cannot be loaded gets an "error" entry; the others still run.
    """
    import llama_cpp

    def log(msg: str) -> None:
        if not json_out:
            print(msg, file=sys.stderr)

    log("probing hardware and memory bandwidth")
    hw = collect_hardware(bandwidth=True)
    cands = candidates or thread_candidates(hw.physical_cores, hw.logical_cores)
    entries: list[dict[str, Any]] = []
    for name, path, sha256 in models:
        try:
            profile = profile_model(Path(path), sha256=sha256, name=name, budget_s=budget_s, candidates=cands,
                                    bandwidth_gbps=hw.bandwidth_gbps, fingerprint=hw.fingerprint, log=log)
        except EdgeError as exc:
            log(f"{name}: {exc}")
            entries.append({"name": name, "model_path": str(path), "sha256": sha256, "error": str(exc)})
            continue
        saved_to = None
        if save:
            try:
                saved_to = str(save_profile(profile, directory))
            except OSError as exc:  # an unwritable cache costs the persistence, not the result
                log(f"{name}: profile not saved: {exc}")
        entries.append({**profile.to_dict(), "saved_to": saved_to})
    return {"schema": SCHEMA_VERSION, "llama_cpp_version": llama_cpp.__version__, "budget_s_per_model": budget_s,
            "hardware": hw.to_dict(), "models": entries}


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _hardware_lines(hw: dict[str, Any]) -> list[str]:
    gib = 2**30
    gpus = hw.get("gpus")
    if gpus is None:
        gpu_text = "nvidia-smi not available"
    elif not gpus:
        gpu_text = "none listed by nvidia-smi"
    else:
        gpu_text = ", ".join(f"{g['name']} ({_num(g['memory_total_mib'], 'd', ' MiB')}, driver {g['driver_version']})"
                             for g in gpus)
    offload = {True: "yes", False: "no", None: "unknown"}[hw.get("llama_gpu_offload")]
    if hw.get("battery_percent") is None:
        battery = "none"
    else:
        plugged = {True: "plugged in", False: "on battery", None: "power source unknown"}[hw.get("battery_plugged")]
        battery = f"{hw['battery_percent']:.0f}%, {plugged}"
    if hw.get("temperature_max_c") is None:
        temp = "not available"
    else:
        hot = ", AT/ABOVE a sensor's high mark" if hw.get("temperature_high") else ""
        temp = f"max {hw['temperature_max_c']:.0f} °C{hot}"
    isa = hw.get("isa")
    ram, avail = hw.get("ram_total_bytes"), hw.get("ram_available_bytes")
    return [
        f"Hardware (fingerprint {hw.get('fingerprint')})",
        f"  CPU          {hw.get('cpu_model') or 'unknown'}: {_num(hw.get('physical_cores'), 'd')} physical / "
        f"{_num(hw.get('logical_cores'), 'd')} logical cores ({hw.get('platform')} {hw.get('machine')})",
        f"  ISA          {' '.join(isa) if isa else ('none of interest' if isa == [] else 'unknown')}",
        f"  RAM          {_num(ram / gib if ram else None, '.1f', ' GiB')} total, "
        f"{_num(avail / gib if avail else None, '.1f', ' GiB')} available",
        f"  Bandwidth    {_num(hw.get('bandwidth_gbps'), '.1f', ' GB/s')} (one-thread copy, read + write)",
        f"  GPUs         {gpu_text}; llama.cpp GPU offload: {offload}",
        f"  Battery      {battery}",
        f"  Temperature  {temp}",
    ]


def format_table(result: dict[str, Any]) -> str:
    """Render `run_profile`'s result: the hardware block, then one row per model per
    thread count, the fastest generation rate marked with FASTEST_MARK, and one
    summary line per model."""
    lines = _hardware_lines(result.get("hardware", {}))
    models = result.get("models", [])
    width = max([len("Model")] + [len(m["name"]) for m in models])
    lines += ["", f"{'Model':<{width}}  Threads  Prompt tok/s  Gen tok/s  Runs"]
    summaries = []
    for m in models:
        if "error" in m:
            lines.append(f"{m['name']:<{width}}  error: {m['error']}")
            continue
        for t in m["by_threads"]:
            mark = f"  {FASTEST_MARK}" if t["threads"] == m["best_threads"] else ""
            lines.append(f"{m['name']:<{width}}  {t['threads']:>7}  {t['prompt_tps']:>12.1f}  {t['gen_tps']:>9.1f}"
                         f"  {t['runs']:>4}{mark}")
        roof = ("no bandwidth measured" if m.get("roofline_tps") is None else
                f"roofline {m['roofline_tps']:.0f} tok/s, measured gen at {m['roofline_fraction']:.2f} of it")
        summaries.append(
            f"  {m['name']}: load {m['load_s']:.2f} s, +{m['rss_bytes'] / 1e6:.0f} MB RSS, TTFT {m['ttft_ms']:.0f} ms, "
            f"{roof}" + (f" [truncated: {m['truncated_reason']}]" if m.get("truncated") else ""))
    if summaries:
        lines += [""] + summaries
    return "\n".join(lines)


def _resolve(args: argparse.Namespace) -> list[tuple[str, Path, str]]:
    from edge.catalog import default_models_dir, list_installed, load_manifest, verify_file

    models_dir = default_models_dir(args.dir or "")
    if args.all:
        # Only llama.cpp models: the router's ONNX/JSON files are not profiled here.
        installed = [m for m in list_installed(models_dir) if m.verified and m.format == "gguf"]
        if not installed:
            raise ModelNotFound(f"no verified model installed in {models_dir} (run `edge models pull`)")
        return [(m.name, m.path, m.sha256) for m in installed]
    manifest = load_manifest()
    name = args.model or manifest.default
    if not any(s.name == name for s in manifest.model):  # a custom model installed with --from
        for m in list_installed(models_dir):
            if m.name == name and m.verified and m.format == "gguf":
                return [(m.name, m.path, m.sha256)]
    spec = manifest.get(name)
    path = models_dir / spec.file
    verify_file(path, spec.sha256, name=spec.name, models_dir=models_dir, expected_size=spec.size)
    return [(spec.name, path, spec.sha256)]


def main(argv: list[str] | None = None, prog: str = "python -m edge.profiler") -> int:
    """`edge profile` / `python -m edge.profiler [--json] [--budget S] [--model NAME | --all]`
    (`prog` names it in help and errors); 0 when every model was profiled, 1 when one
    failed or none was found, 2 on bad arguments."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Measure this machine and how fast the installed local models run on it.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (and no progress on stderr)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="S",
                   help=f"seconds per model (default {DEFAULT_BUDGET_S:g}; under 30 s: the short start-up profile)")
    p.add_argument("--model", help="manifest or installed model name (default: the manifest's default)")
    p.add_argument("--all", action="store_true", help="every verified installed model")
    p.add_argument("--dir", help="models directory (default: $EDGE_MODELS_DIR or the user cache)")
    p.add_argument("--threads", default="", help="comma-separated thread counts to try (default: 1..cores)")
    p.add_argument("--profiles-dir", help="where profiles are saved (default: <user cache>/edge/profiles)")
    p.add_argument("--no-save", action="store_true", help="do not update the profile cache")
    args = p.parse_args(argv)
    try:
        candidates = [int(x) for x in args.threads.split(",") if x.strip()] or None
    except ValueError:
        p.error(f"--threads: expected comma-separated integers, got {args.threads!r}")
    if args.budget <= 0:
        p.error("--budget must be > 0")
    try:
        models = _resolve(args)
    except EdgeError as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 1
    result = run_profile(models, budget_s=args.budget, json_out=args.json, candidates=candidates, save=not args.no_save,
                         directory=Path(args.profiles_dir) if args.profiles_dir else None)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 1 if any("error" in m for m in result["models"]) else 0
