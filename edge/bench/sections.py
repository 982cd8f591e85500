"""The sections of `edge bench`, in the order they run: each takes the shared state, a
deadline (perf_counter) and a progress callback, and returns its part of the report.
A section that cannot run here raises SectionSkipped with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge.bench.state import BenchState
from edge.profiler.measure import NOISY_SPREAD

__all__ = ["SectionSkipped", "run_local", "run_daemon", "run_capacity", "run_router"]

Say = Callable[[str], None]
MIN_MODEL_S = 8.0  # a further model is measured only with at least this much of the section left


class SectionSkipped(Exception):
    """This section does not apply on this box (the reason is the message)."""


def _need_model(state: BenchState) -> Any:
    target = state.default_target
    if target is None:
        raise SectionSkipped("no local model to measure (run `edge models pull`)")
    return target


def _local_warnings(model: dict[str, Any]) -> list[str]:
    """Why a model's figures may mislead: repeats that disagree, thread counts never measured."""
    best = next(t for t in model["by_threads"] if t["threads"] == model["best_threads"])
    spread = best["gen_tps"]["spread"]
    out = [f"{model['name']}: repeats differed by {spread:.0%}"] if spread > NOISY_SPREAD else []
    if model["threads_not_measured"]:
        out.append(f"{model['name']}: threads {model['threads_not_measured']} not measured (the budget ran out), "
                   "so the fastest count may be another")
    return out


def run_local(state: BenchState, deadline: float, say: Say) -> dict[str, Any]:
    """Each model: rates by thread count, TTFT short and long; GPU offload where possible."""
    from edge.bench.local import gpu_status, measure_gpu, measure_model

    _need_model(state)
    gpu = gpu_status(list(state.facts.get("gpus") or []))
    models, skipped, warnings = [], [], []
    for i, target in enumerate(state.targets):
        left = deadline - time.perf_counter()
        if i > 0 and left < MIN_MODEL_S:
            skipped.append({"name": target.name, "reason": f"the budget left {max(0.0, left):.0f} s"})
            continue
        share = left / (len(state.targets) - i) if not target.default else max(left * 0.6, left / len(state.targets))
        m = measure_model(target, threads=state.threads, deadline=time.perf_counter() + share, quick=state.options.quick,
                          n_ctx=state.n_ctx, progress=lambda msg, n=target.name: say(f"{n}: {msg}"))
        if target.default:
            state.best_threads = m["best_threads"]
            if gpu["supported_by_build"]:  # nvidia-smi does not list every GPU (Metal, Vulkan): try the offload
                say(f"{target.name}: with every layer on the GPU")
                offload = _part(lambda: measure_gpu(target, threads=m["best_threads"], deadline=deadline,
                                                    n_ctx=state.n_ctx))
                gpu = {**gpu, **offload} if offload.get("status") != "error" else \
                    {**gpu, "note": f"{gpu['note']}; offloading failed: {offload['error']}"}
        models.append(m)
        warnings += _local_warnings(m)
    return {"models": models, "skipped": skipped, "gpu": gpu, "threads_tried": state.threads,
            "_unreliable": warnings}


def _start_stage(state: BenchState, say: Say) -> None:
    """The loopback remote, then the daemon on the default model at the best thread count."""
    from edge.bench.daemon import bench_config
    from edge.bench.daemon_proc import start_daemon
    from edge.client import Client
    from edge.testing.providers import ProviderServer

    target = _need_model(state)
    state.remote = ProviderServer("openai", reply="A calm and wide sea rolls under a pale sky today.",
                                  token_delay_s=0.005).start()
    say(f"starting edge serve ({target.name}, n_threads={state.threads_for_serving})")
    cfg = bench_config(target, threads=state.threads_for_serving, n_ctx=state.n_ctx, remote_url=state.remote.base_url,
                       n_gpu_layers=state.settings.local.n_gpu_layers)
    state.daemon = start_daemon(cfg, state.workdir / "daemon")
    state.sampler.watch(state.daemon.proc.pid)
    state.client = Client(state.daemon.target)
    state.facts["cold_start_s"] = round(state.daemon.cold_start_s, 3)
    say(f"SERVING after {state.daemon.cold_start_s:.2f} s")


def _rss(pid: int) -> int | None:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def run_daemon(state: BenchState, deadline: float, say: Say) -> dict[str, Any]:
    """Cold start, idle memory, streams through the daemon vs direct, gRPC round trips."""
    from edge.bench.daemon import compare_streams, round_trips
    from edge.profiler.measure import load_llama

    target = _need_model(state)
    _start_stage(state, say)
    assert state.daemon is not None
    time.sleep(1.0)  # let start-up settle before reading idle memory
    state.facts["daemon_rss_idle_bytes"] = _rss(state.daemon.proc.pid)
    quick = state.options.quick
    llm = load_llama(target.path, name=target.name, n_ctx=state.n_ctx, threads=state.threads_for_serving,
                     n_gpu_layers=state.settings.local.n_gpu_layers)  # the same placement as the daemon's
    try:
        now = time.perf_counter()
        streams = compare_streams(state.client, llm, max_tokens=64 if quick else 128, pairs=3 if quick else 8,
                                  ttft_pairs=5 if quick else 15, deadline=now + (deadline - now) * 0.8, progress=say)
    finally:
        llm.close()
    trips = round_trips(state.client, state.daemon.target, calls=100 if quick else 300, deadline=deadline)
    say(f"daemon {streams['daemon_tps']['median']:.0f} tok/s vs direct {streams['direct_tps']['median']:.0f}; "
        f"round trip {trips['generate_ms']['median']:.2f} ms")
    warnings = [f"the {side} streams' repeats differed by {streams[f'{side}_tps']['spread']:.0%}"
                for side in ("direct", "daemon") if streams[f"{side}_tps"]["spread"] > NOISY_SPREAD]
    return {"model": target.name, "threads": state.threads_for_serving,
            "n_gpu_layers": state.settings.local.n_gpu_layers, "cold_start_s": state.facts["cold_start_s"],
            "streams": streams, "round_trips": trips, "_unreliable": warnings}


def run_capacity(state: BenchState, deadline: float, say: Say) -> dict[str, Any]:
    """The highest rate held under the p99 limit, then twice it with the remote up and down."""
    from edge.bench.capacity import (capacity_ladder, past_capacity, request_timeout, sequential_capacity,
                                     service_time_ms)
    from edge.bench.daemon import QUEUE_SIZE
    from edge.bench.stats import summarize

    if state.daemon is None or state.remote is None:
        raise SectionSkipped("the daemon section did not start a daemon")
    quick, limit = state.options.quick, state.options.p99_limit_ms
    service = service_time_ms(state.client, repeats=3 if quick else 5, timeout_s=request_timeout(limit))
    seq = sequential_capacity(service)
    say(f"one at a time: {seq:.2f} req/s")
    now = time.perf_counter()
    level_s = max(2.0, min(10.0, (deadline - now) / 8))
    ladder = capacity_ladder(state.daemon.target, seq, level_s=level_s, p99_limit_ms=limit, queue_size=QUEUE_SIZE,
                             deadline=now + (deadline - now) * 0.6, progress=say)
    before = state.sampler.mark()
    remote = state.remote
    past = past_capacity(state.daemon.target, 2 * seq, level_s=level_s, stop_remote=remote.stop,
                         timeout_s=request_timeout(limit), progress=say)
    state.facts["daemon_rss_load_bytes"] = max((s.watched_rss or 0 for s in state.sampler.window(before)),
                                               default=0) or _rss(state.daemon.proc.pid)
    state.stop_daemon()
    return {"prompt": "one sentence about the sea", "max_tokens": 16, "p99_limit_ms": limit, "queue_size": QUEUE_SIZE,
            "service_ms": summarize(service, 1), "sequential_rps": round(seq, 2), "level_s": round(level_s, 1),
            **ladder, "past_capacity": {"offered_rps": round(2 * seq, 2), **past},
            "remote": "loopback OpenAI-compatible emulator (edge.testing.providers), 5 ms a word"}


def _part(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One measurement of a section: its result, or its error (the others still run)."""
    try:
        return fn()
    except SectionSkipped as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported in the section, not raised
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


def run_router(state: BenchState, deadline: float, say: Say) -> dict[str, Any]:
    """The classifier and a decision, the answer cache, confidence scoring."""
    from edge.bench.confidence import confidence_costs
    from edge.bench.router_costs import cache_costs, classifier_costs
    from edge.catalog import default_models_dir
    from edge.errors import EdgeError
    from edge.router.classifier import DifficultyClassifier

    quick, out = state.options.quick, {}
    start = time.perf_counter()
    span = deadline - start
    try:
        clf = DifficultyClassifier.from_models_dir(default_models_dir(state.settings.local.models_dir))
    except EdgeError as exc:
        out["classifier"] = out["cache"] = {"status": "skipped", "reason": str(exc)}
    else:
        say("difficulty classifier")
        out["classifier"] = _part(lambda: classifier_costs(clf, calls=50 if quick else 200,
                                                           deadline=start + span * 0.25))
        say("answer cache")
        out["cache"] = _part(lambda: cache_costs(clf.encoder.embed, entries=2000 if quick else 10_000,
                                                 queries=50 if quick else 300, deadline=start + span * 0.6))
    target = state.default_target
    if target is None:
        out["confidence"] = {"status": "skipped", "reason": "no local model"}
    else:
        say("confidence scoring")
        out["confidence"] = _part(lambda: confidence_costs(
            target.path, threads=state.threads_for_serving, max_tokens=48 if quick else 128,
            repeats=2 if quick else 6, deadline=deadline, n_ctx=state.n_ctx, progress=say))
    return out
