"""Each local model on this box: prompt and generation rates by thread count, time to
first token for a short and a long prompt, and GPU offload where the build and the
hardware allow it.

The timed runs are the profiler's (edge.profiler.measure): greedy `Llama.generate()`
from an empty KV cache, thread counts applied to one loaded context, candidates
measured round-robin so drift on a shared box hits each alike, a pause before each run
so the previous run's llama.cpp threads have stopped spinning. Every figure is a
median over repeats with its spread (edge.bench.stats).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

from edge.bench.stats import median_of, summarize
from edge.bench.targets import ModelTarget
from edge.profiler.measure import (
    IDLE_S,
    TYPICAL_GEN,
    TYPICAL_PROMPT,
    _PROSE,
    bench_prompt,
    chat_prompt,
    load_llama,
    set_threads,
    timed_run,
)
from edge.profiler.profile import ThreadResult, fastest_threads

__all__ = ["SHORT_QUESTION", "long_question", "measure_model", "thread_sweep", "gpu_status"]

SHORT_QUESTION = "What is the capital of France?"


def long_question() -> str:
    """A user turn of about 450 tokens: a document to summarise, as a kiosk's RAG prompt might be."""
    return "Summarise this log entry in one sentence.\n\n" + _PROSE * 4


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def thread_sweep(llm: Any, tokens: list[int], threads: list[int], *, gen_tokens: int, rounds: int,
                 deadline: float, progress: Callable[[str], None] = lambda _m: None) -> dict[int, list[Any]]:
    """Timed runs (edge.profiler.measure._Run) per thread count: up to `rounds` whole
    rounds over `threads`; the first round always runs, later ones while they fit before
    `deadline` (perf_counter)."""
    runs: dict[int, list[Any]] = {n: [] for n in threads}
    for r in range(rounds):
        for n in threads:
            if r > 0 or n != threads[0]:
                cost = IDLE_S + max((x.wall_s for rs in runs.values() for x in rs), default=0.0)
                if time.perf_counter() + cost > deadline:
                    return {k: v for k, v in runs.items() if v}
            set_threads(llm, n)
            time.sleep(IDLE_S)
            run = timed_run(llm, tokens, gen_tokens, stop_at=deadline)
            runs[n].append(run)
            progress(f"threads {n}: gen {run.gen_tps:.0f} tok/s, prompt {run.prompt_tps:.0f} tok/s "
                     f"(round {r + 1}/{rounds})")
    return {k: v for k, v in runs.items() if v}


def _ttft(llm: Any, prompts: dict[str, list[int]], repeats: int, deadline: float) -> dict[str, list[float]]:
    """Milliseconds to the first token for each prompt, alternating; at least one each."""
    out: dict[str, list[float]] = {k: [] for k in prompts}
    for i in range(repeats):
        for kind, tokens in prompts.items():
            if i > 0 and time.perf_counter() > deadline:
                return out
            time.sleep(IDLE_S)
            out[kind].append(timed_run(llm, tokens, 1).prompt_s * 1000)
    return out


def gpu_status(gpus: list[str] | None) -> dict[str, Any]:
    """Whether this llama-cpp-python build can offload to a GPU, which GPUs were found,
    and, when the model stays on the CPU, why (one plain sentence)."""
    import llama_cpp

    supported = bool(llama_cpp.llama_supports_gpu_offload())
    found = f"GPUs found: {', '.join(gpus)}" if gpus else "no GPU found (nvidia-smi absent or listing none)"
    if supported:
        note, fix = f"the build can offload to a GPU; {found}", ""
    else:
        note = f"CPU-only: this llama-cpp-python build has no GPU backend (llama.cpp was compiled for the CPU alone); {found}"
        fix = "to use a GPU, rebuild llama-cpp-python for it, e.g. CMAKE_ARGS=\"-DGGML_CUDA=on\" scripts/setup.sh"
    return {"supported_by_build": supported, "gpus": gpus or [], "offload": False, "note": note, "fix": fix}


def _by_threads(runs: dict[int, list[Any]]) -> list[dict[str, Any]]:
    return [{"threads": n, "prompt_tps": summarize([r.prompt_tps for r in rs], 1),
             "gen_tps": summarize([r.gen_tps for r in rs], 1)} for n, rs in sorted(runs.items())]


def _plan(quick: bool) -> tuple[int, int, int]:
    """(generated tokens per run, rounds over the thread counts, TTFT repeats)."""
    return (64, 3, 3) if quick else (128, 5, 5)


def measure_model(target: ModelTarget, *, threads: list[int], deadline: float, quick: bool, n_ctx: int = 2048,
                  progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Load `target`, sweep `threads`, time first tokens at the fastest count; within
    about `deadline` (perf_counter; the load, warm-up, one run per count and one TTFT
    per prompt always happen)."""
    started = time.perf_counter()
    gen_tokens, rounds, ttft_repeats = _plan(quick)
    rss0 = _rss()
    llm = load_llama(target.path, name=target.name, n_ctx=n_ctx, threads=threads[0])
    load_s = time.perf_counter() - started
    try:
        prompt = bench_prompt(llm)
        timed_run(llm, prompt[:16], 4)  # warm-up: every weight page touched outside the timed runs
        rss_bytes = _rss() - rss0
        progress(f"loaded in {load_s:.2f} s")
        sweep_end = started + (deadline - started) * 0.7
        runs = thread_sweep(llm, prompt, threads, gen_tokens=gen_tokens, rounds=rounds, deadline=sweep_end,
                            progress=progress)
        table = _by_threads(runs)
        best = fastest_threads([ThreadResult(t["threads"], median_of(t["prompt_tps"]) or 0.0,
                                             median_of(t["gen_tps"]) or 0.0, t["gen_tps"]["n"]) for t in table],
                               TYPICAL_PROMPT, TYPICAL_GEN)
        set_threads(llm, best)
        prompts = {"short": chat_prompt(llm, SHORT_QUESTION), "long": chat_prompt(llm, long_question())}
        ttft = _ttft(llm, prompts, ttft_repeats, deadline)
        progress(f"TTFT short {min(ttft['short']):.0f} ms, long {min(ttft['long']):.0f} ms")
    finally:
        llm.close()
    at_best = next(t for t in table if t["threads"] == best)
    return {
        "name": target.name, "file": target.path.name, "size_bytes": target.size, "sha256": target.sha256,
        "default": target.default, "n_ctx": n_ctx, "load_s": round(load_s, 3), "rss_bytes": rss_bytes,
        "prompt_tokens": len(prompt), "gen_tokens": gen_tokens, "by_threads": table, "best_threads": best,
        "prompt_tps": median_of(at_best["prompt_tps"]), "gen_tps": median_of(at_best["gen_tps"]),
        "threads_not_measured": [n for n in threads if n not in runs],  # the budget ran out first
        "ttft_ms": {kind: summarize(v, 1) for kind, v in ttft.items()},
        "ttft_prompt_tokens": {kind: len(v) for kind, v in prompts.items()},
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def measure_gpu(target: ModelTarget, *, threads: int, deadline: float, n_ctx: int = 2048) -> dict[str, Any]:
    """Rates with every layer offloaded (n_gpu_layers = -1): two runs and one short TTFT."""
    llm = load_llama(target.path, name=target.name, n_ctx=n_ctx, threads=threads, n_gpu_layers=-1)
    try:
        prompt = bench_prompt(llm)
        timed_run(llm, prompt[:16], 4)
        runs = [timed_run(llm, prompt, 128, stop_at=deadline) for _ in range(2)]
        ttft = timed_run(llm, chat_prompt(llm, SHORT_QUESTION), 1).prompt_s * 1000
    finally:
        llm.close()
    return {"offload": True, "n_gpu_layers": -1, "gen_tps": summarize([r.gen_tps for r in runs], 1),
            "prompt_tps": summarize([r.prompt_tps for r in runs], 1), "ttft_short_ms": round(ttft, 1)}
