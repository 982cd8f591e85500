"""`edge bench`: run the sections within the budget, watch the machine meanwhile, and
write the report (JSON and HTML).

The budget is shared out in advance: each section must finish by its cumulative share
of it (local models 28%, the daemon 20%, capacity 26%, the router's costs 18%; the rest
is start-up and the report), so time one section saves goes to the next and one that
overruns shortens the rest rather than the run. Each section does its minimum (one run
per thread count, one pair, one level) whatever the budget, then repeats while its time
lasts. A section that fails is reported with its error and the others still run.
"""

from __future__ import annotations

import platform
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge.bench.progress import Progress
from edge.bench.report_json import KIND, SCHEMA_VERSION, report_stem, summary, write_json
from edge.bench.resources import fingerprint, memory, sensors, timeline
from edge.bench.sampler import Sampler, noise
from edge.bench.sections import SectionSkipped, run_capacity, run_daemon, run_local, run_router
from edge.bench.state import BenchOptions, BenchState

__all__ = ["SECTION_PLAN", "run_bench", "write_report"]

Section = Callable[[BenchState, float, Callable[[str], None]], dict[str, Any]]
# A section that would start past this multiple of the budget is skipped: the box is so busy
# that the minimums overran (llama.cpp's threads slow down many times when another program
# takes a core), and its figures would say little anyway.
HARD_STOP = 1.5
SECTION_PLAN: tuple[tuple[str, float, Section], ...] = (
    ("local", 0.28, run_local),
    ("daemon", 0.20, run_daemon),
    ("capacity", 0.26, run_capacity),
    ("router", 0.18, run_router),
)


def _prepare(options: BenchOptions, workdir: Path, sampler: Sampler) -> tuple[BenchState, list[str]]:
    from edge.bench.targets import resolve_targets
    from edge.config import load_settings
    from edge.profiler.hardware import collect_hardware
    from edge.profiler.measure import thread_candidates

    settings = load_settings(options.config)
    targets, problems = resolve_targets(settings, options.model)
    hw = collect_hardware(bandwidth=not options.quick)
    threads = list(dict.fromkeys(options.threads)) or thread_candidates(hw.physical_cores, hw.logical_cores)
    state = BenchState(options=options, settings=settings, targets=targets, threads=threads, hw=hw, sampler=sampler,
                       workdir=workdir, n_ctx=settings.local.n_ctx)
    state.facts["gpus"] = [g.name for g in hw.gpus] if hw.gpus else []
    return state, problems


def _run_section(name: str, fn: Section, state: BenchState, deadline: float, progress: Progress) -> dict[str, Any]:
    mark, t0 = state.sampler.mark(), time.perf_counter()
    try:
        result = {"status": "ok", **fn(state, deadline, progress)}
    except SectionSkipped as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others' figures
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        progress(f"failed: {result['error']}")
    extra = result.pop("_unreliable", [])
    verdict = noise(state.sampler.window(mark))
    if extra:
        verdict["reliable"] = False
        verdict["reason"] = "; ".join([r for r in (verdict["reason"], *extra) if r])
    result["elapsed_s"] = round(time.perf_counter() - t0, 2)
    result["noise"] = verdict
    return result


def _over_budget(state: BenchState, budget_s: float) -> dict[str, Any]:
    reason = (f"not run: the sections before it overran the {budget_s:g} s budget by half (the box was busy; "
              "see their noise)")
    return {"status": "skipped", "reason": reason, "over_budget": True, "elapsed_s": 0.0,
            "noise": {"other_cpu": None, "steal": None, "samples": 0, "reliable": False, "reason": reason}}


def _resources(state: BenchState) -> dict[str, Any]:
    samples = state.sampler.window(0)
    mem = memory(samples)
    return {"status": "ok", "cold_start_s": state.facts.get("cold_start_s"),
            "daemon_rss_idle_bytes": state.facts.get("daemon_rss_idle_bytes"),
            "daemon_rss_load_bytes": state.facts.get("daemon_rss_load_bytes"),
            "bench_rss_peak_bytes": mem["bench_peak_bytes"], "sensors": sensors(samples, state.sampler),
            "timeline": timeline(samples), "noise": noise(samples)}


def _reliability(sections: dict[str, Any]) -> list[str]:
    return [f"{name}: {s['noise']['reason']}" for name, s in sections.items()
            if (s.get("status") == "ok" or s.get("over_budget")) and not s["noise"]["reliable"]]


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run every section on this box within `options.budget` seconds; the report (a dict,
    see edge.bench.report_json). Writes nothing: see `write_report`."""
    started, created = time.perf_counter(), datetime.now(timezone.utc)
    progress = Progress(options.budget, enabled=options.progress)
    progress.prefix = "[0/4 setup"
    progress("probing the hardware" + ("" if options.quick else " and memory bandwidth"))
    sampler = Sampler().start()
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        state, problems = _prepare(options, Path(tmp), sampler)
        try:
            share = 0.0
            for i, (name, part, fn) in enumerate(SECTION_PLAN, start=1):
                share += part
                progress.section(i, len(SECTION_PLAN), name)
                if time.perf_counter() > started + options.budget * HARD_STOP:
                    sections[name] = _over_budget(state, options.budget)
                    continue
                sections[name] = _run_section(name, fn, state, started + options.budget * share, progress)
        finally:
            state.stop_daemon()
            sampler.stop()
            progress.finish()
    sections["resources"] = _resources(state)
    reasons = _reliability(sections)
    return {
        "schema_version": SCHEMA_VERSION, "kind": KIND, "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(), "mode": "quick" if options.quick else "default",
        "budget_s": options.budget, "elapsed_s": round(time.perf_counter() - started, 1),
        "options": {"threads": state.threads, "config": options.config, "model": options.model or None,
                    "p99_limit_ms": options.p99_limit_ms, "n_ctx": state.n_ctx, "python": platform.python_version()},
        "fingerprint": fingerprint(state.hw), "reliable": not reasons, "unreliable_reasons": reasons,
        "problems": problems, "sections": sections, "summary": summary(sections),
    }


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """`out_dir/bench-<host>-<time>.json` and `.html`; their paths."""
    from edge.bench.report_html import render_report

    stem = report_stem(report["host"], report["created_at"])
    json_path = write_json(report, out_dir / f"{stem}.json")
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(render_report(report), encoding="utf-8")
    return json_path, html_path
