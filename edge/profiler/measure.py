"""Measure one GGUF model on this machine within a time budget.

One `Llama` is loaded; each thread-count candidate is applied to its context with
`llama_set_n_threads` (no reload), and every timed run is a greedy
`Llama.generate()` from an empty KV cache, as in `benchmarks/threads.py`.

The budget is best effort: the load, one warm-up and one run at the first candidate
always happen (a profile needs one number); further candidates, repeats and TTFT
samples are added only while their estimated cost still fits, and a generation
stops early at the deadline. Anything planned but dropped sets `truncated`.

The best thread count is the one that serves a typical request fastest (TYPICAL_PROMPT
prompt tokens and TYPICAL_GEN generated ones; ModelProfile.best_threads_for), not the
one with the best generation rate alone.

A profile measured while the machine was busy is marked `noisy` (other programs' CPU,
hypervisor steal, or repeats that disagree: NOISY_* below); the daemon applies it for
now and measures again when the machine is idle. A `cancel` event stops a profile at
the next token (the daemon's shutdown must not wait for one).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edge.catalog import check_gguf_header
from edge.errors import ModelCorrupt, ModelError
from edge.profiler.hardware import collect_hardware, measure_bandwidth_gbps
from edge.profiler.profile import ModelProfile, ThreadResult, fastest_threads, load_profile, save_profile

__all__ = ["PROMPT_TOKENS", "SHORT_BUDGET_S", "ProfileCancelled", "thread_candidates", "profile_model",
           "ensure_profile", "load_llama", "timed_run", "set_threads", "bench_prompt", "chat_prompt"]

PROMPT_TOKENS = 100          # prompt length for the prompt-rate runs
SHORT_BUDGET_S = 30.0        # below this: the start-up plan (few tokens, few repeats)
IDLE_S = 0.2                 # between timed runs: llama.cpp's worker threads spin a while after a decode
N_CTX = 2048                 # the daemon's default context: the KV cache counted in rss_bytes matches serving
_TTFT_QUESTION = "What is the capital of France?"
TYPICAL_PROMPT = 256         # a chat turn's prompt (template and history included) ...
TYPICAL_GEN = 128            # ... and its answer: what the best thread count is chosen for
NOISY_OTHER_LOAD = 0.25      # other processes kept a quarter of all CPUs busy during the runs
NOISY_STEAL = 0.05           # the hypervisor took 5% of the CPU time
NOISY_SPREAD = 0.25          # repeats at one thread count differed by a quarter of their median
# Plain prose to continue; generation runs past an end-of-generation token on
# purpose (the per-token cost does not depend on the text), so every run yields
# the same number of tokens.
_PROSE = ("The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps "
          "as his father had taught him. From the lantern room he could see the fishing boats returning "
          "across the bay, their sails catching the last of the orange light, and beyond them the dark line "
          "of the northern cliffs where the storms were born. He trimmed the wick, polished the great lens, "
          "and wrote the weather in his log: wind from the west, a falling glass, a swell that promised rain. ")


class ProfileCancelled(ModelError):
    """The profile was stopped (the daemon is shutting down)."""


class _LoadMeter:
    """Other processes' CPU and the hypervisor's steal while our runs were timed."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._ncpu = psutil.cpu_count() or 1
        self.other: list[float] = []
        self.steal: list[float] = []
        self._start: tuple[Any, Any, float] | None = None

    def __enter__(self) -> _LoadMeter:
        self._start = (psutil.cpu_times(), self._me.cpu_times(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        sys0, me0, t0 = self._start
        sys1, me1, wall = psutil.cpu_times(), self._me.cpu_times(), time.perf_counter() - t0
        if wall <= 0:
            return
        busy = (_busy(sys1) - _busy(sys0)) - ((me1.user + me1.system) - (me0.user + me0.system))
        self.other.append(max(0.0, min(1.0, busy / (wall * self._ncpu))))
        steal = getattr(sys1, "steal", 0.0) - getattr(sys0, "steal", 0.0)
        self.steal.append(max(0.0, min(1.0, steal / (wall * self._ncpu))))


def _busy(t: Any) -> float:
    """CPU seconds spent on anything but idling (all CPUs)."""
    return sum(getattr(t, f) for f in ("user", "nice", "system", "irq", "softirq", "guest") if hasattr(t, f))


def _noise(meter: _LoadMeter, runs: dict[int, list[_Run]]) -> tuple[float, float, float, str]:
    """(other load, steal, spread, why it is noisy or "")."""
    other = statistics.mean(meter.other) if meter.other else 0.0
    steal = statistics.mean(meter.steal) if meter.steal else 0.0
    spreads = [(max(r.gen_tps for r in rs) - min(r.gen_tps for r in rs)) / statistics.median(r.gen_tps for r in rs)
               for rs in runs.values() if len(rs) > 1 and statistics.median(r.gen_tps for r in rs) > 0]
    spread = max(spreads, default=0.0)
    why = [f"other programs used {other:.0%} of the CPUs" if other > NOISY_OTHER_LOAD else "",
           f"CPU steal {steal:.0%}" if steal > NOISY_STEAL else "",
           f"repeats differed by {spread:.0%}" if spread > NOISY_SPREAD else ""]
    return other, steal, spread, "; ".join(w for w in why if w)


@dataclass(frozen=True)
class _Plan:
    gen_tokens: int
    repeats: int
    ttft_repeats: int


def _plan(budget_s: float) -> _Plan:
    # Start-up profiles must be quick; `edge profile` with a generous budget gets
    # longer generations (less timer noise) and more repeats (medians that hold).
    return _Plan(32, 2, 2) if budget_s < SHORT_BUDGET_S else _Plan(128, 5, 3)


def thread_candidates(physical: int | None, logical: int | None) -> list[int]:
    """1..physical cores, plus the logical count when it differs; in measuring order:
    physical first (the daemon's default, so a truncated profile still has it), then
    logical, then downwards (a 1-thread run is the least likely winner and the slowest)."""
    phys = max(1, physical or logical or 1)
    order = [phys]
    if logical and logical != phys:
        order.append(logical)
    order += range(phys - 1, 0, -1)
    return order


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


@dataclass(frozen=True)
class _Run:
    prompt_tokens: int
    prompt_s: float   # from the generate() call to the first sampled token
    gen_tokens: int   # tokens after the first
    gen_s: float      # from the first token to the last
    wall_s: float

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def gen_tps(self) -> float:
        return self.gen_tokens / self.gen_s if self.gen_tokens > 0 and self.gen_s > 0 else 0.0


def timed_run(llm: Any, tokens: list[int], max_tokens: int, stop_at: float | None = None,
               cancel: threading.Event | None = None) -> _Run:
    """One greedy generation from an empty KV cache; stops after `max_tokens` tokens,
    or at `stop_at` (perf_counter) once at least 3 tokens timed the generation rate.
    Raises ProfileCancelled at the next token once `cancel` is set."""
    llm.reset()
    llm._ctx.kv_cache_clear()  # noqa: SLF001 - force a full prompt evaluation each run
    t0 = time.perf_counter()
    first = end = t0
    n = 0
    gen = llm.generate(tokens, temp=0.0, reset=True)
    try:
        for _ in gen:
            end = time.perf_counter()
            if cancel is not None and cancel.is_set():
                raise ProfileCancelled("profile cancelled")
            if n == 0:
                first = end
            n += 1
            if n >= max_tokens or (stop_at is not None and end >= stop_at and n >= 3):
                break
    finally:
        gen.close()
    return _Run(prompt_tokens=len(tokens), prompt_s=first - t0, gen_tokens=max(0, n - 1), gen_s=end - first,
                wall_s=end - t0)


def set_threads(llm: Any, n: int) -> None:
    import llama_cpp

    llama_cpp.llama_set_n_threads(llm._ctx.ctx, n, n)  # noqa: SLF001 - same context, new thread count
    llm.n_threads = llm.n_threads_batch = n


def bench_prompt(llm: Any) -> list[int]:
    tokens: list[int] = llm.tokenize(_PROSE.encode("utf-8"), add_bos=True, special=False)
    while len(tokens) < PROMPT_TOKENS:
        tokens += llm.tokenize(_PROSE.encode("utf-8"), add_bos=False, special=False)
    return tokens[:PROMPT_TOKENS]


def chat_prompt(llm: Any, question: str) -> list[int]:
    """`question` as one user turn in the model's own chat template (as the backend
    formats it); plain "User:/Assistant:" text when the GGUF has no usable template."""
    template = llm.metadata.get("tokenizer.chat_template")
    if template:
        try:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text(tok: int) -> str:
                return llm._model.token_get_text(tok) if tok != -1 else ""  # noqa: SLF001

            fmt = Jinja2ChatFormatter(template=template, eos_token=text(llm.token_eos()),
                                      bos_token=text(llm.token_bos()), stop_token_ids=[llm.token_eos()])
            out = fmt(messages=[{"role": "user", "content": question}])
            return list(llm.tokenize(out.prompt.encode("utf-8"), add_bos=not out.added_special, special=True))
        except Exception:  # noqa: BLE001 - a template the formatter rejects only changes the TTFT prompt
            pass
    return list(llm.tokenize(f"User: {question}\nAssistant:".encode(), add_bos=True, special=False))


def load_llama(path: Path, *, name: str, n_ctx: int = N_CTX, threads: int = 1, n_gpu_layers: int = 0) -> Any:
    """A quiet `llama_cpp.Llama` for timed runs; ModelCorrupt when llama.cpp refuses the file."""
    import llama_cpp

    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                               n_gpu_layers=n_gpu_layers, verbose=False)
    except ValueError as exc:  # llama-cpp-python's "failed to load model"
        raise ModelCorrupt(f"model {name!r}: llama.cpp could not load {path}: {exc}") from exc


def _median_result(threads: int, runs: list[_Run]) -> ThreadResult:
    return ThreadResult(threads=threads, prompt_tps=statistics.median(r.prompt_tps for r in runs),
                        gen_tps=statistics.median(r.gen_tps for r in runs), runs=len(runs))


def profile_model(path: Path, *, sha256: str, name: str = "", budget_s: float = 20.0,
                  candidates: list[int] | None = None, bandwidth_gbps: float | None = None,
                  fingerprint: str | None = None, n_ctx: int = N_CTX, n_gpu_layers: int = 0,
                  log: Callable[[str], None] = lambda _m: None,
                  cancel: threading.Event | None = None) -> ModelProfile:
    """Measure `path` within about `budget_s` seconds (see the module docstring).

    `candidates` are thread counts in measuring order (default: `thread_candidates`
    for this machine); `bandwidth_gbps` gives the roofline (None: no roofline);
    `fingerprint` the hardware key (None: probed now, without the bandwidth test).
    `sha256` is recorded, not checked: the caller verified the file. Raises
    ModelNotFound/ModelCorrupt when the file cannot be loaded, ModelError when a run
    produces no timing.
    """
    import llama_cpp

    started = time.perf_counter()
    deadline = started + budget_s
    if fingerprint is None or candidates is None:
        hw = collect_hardware(bandwidth=False)
        fingerprint = fingerprint or hw.fingerprint
        if candidates is None:
            candidates = thread_candidates(hw.physical_cores, hw.logical_cores)
    candidates = list(dict.fromkeys(c for c in candidates if c > 0))  # positive, each once, order kept
    if not candidates:
        raise ModelError("profile: no positive thread count among the candidates")
    plan = _plan(budget_s)
    name = name or path.stem
    check_gguf_header(path)  # llama.cpp may crash in native code on a file that is not GGUF
    if cancel is not None and cancel.is_set():
        raise ProfileCancelled("profile cancelled")

    rss0 = _rss()
    t0 = time.perf_counter()
    llm = load_llama(path, name=name, n_ctx=n_ctx, threads=candidates[0], n_gpu_layers=n_gpu_layers)
    load_s = time.perf_counter() - t0
    try:
        rss_load = _rss() - rss0
        prompt = bench_prompt(llm)
        chat = chat_prompt(llm, _TTFT_QUESTION)
        # Warm-up: every weight page is touched (mmap faults, a cold disk) outside the timed runs.
        t0 = time.perf_counter()
        timed_run(llm, prompt[:16], 4, cancel=cancel)
        warmup_s = time.perf_counter() - t0
        rss_bytes = _rss() - rss0
        log(f"{name}: loaded in {load_s:.2f} s, warm-up {warmup_s:.2f} s")

        runs: dict[int, list[_Run]] = {}
        reasons: list[str] = []
        meter = _LoadMeter()

        def measure(n: int) -> _Run:
            set_threads(llm, n)
            time.sleep(IDLE_S)
            with meter:
                run = timed_run(llm, prompt, plan.gen_tokens, stop_at=deadline, cancel=cancel)
            runs.setdefault(n, []).append(run)
            log(f"{name}: threads={n} prompt {run.prompt_tps:.1f} tok/s, gen {run.gen_tps:.1f} tok/s")
            return run

        def ttft_reserve() -> float:
            # What the TTFT samples will cost: the chat prompt is shorter than the bench prompt.
            last = max(r.prompt_s for rs in runs.values() for r in rs)
            return IDLE_S + last * len(chat) / len(prompt)

        # Round 1 adds candidates; the first always runs.
        measure(candidates[0])
        for n in candidates[1:]:
            cost = IDLE_S + max(r.wall_s for rs in runs.values() for r in rs)
            if time.perf_counter() + cost + ttft_reserve() > deadline:
                skipped = [c for c in candidates if c not in runs]
                reasons.append(f"budget {budget_s:g} s ran out before threads {skipped}")
                break
            measure(n)
        # Further rounds, round-robin so drift hits every candidate alike; only whole rounds.
        rounds = 1
        while rounds < plan.repeats:
            cost = sum(IDLE_S + max(r.wall_s for r in runs[n]) for n in runs)
            if time.perf_counter() + cost + ttft_reserve() > deadline:
                reasons.append(f"{rounds} of {plan.repeats} repeats fitted in the budget")
                break
            for n in list(runs):
                measure(n)
            rounds += 1

        results = {n: _median_result(n, rs) for n, rs in runs.items()}
        best = results[fastest_threads(list(results.values()), TYPICAL_PROMPT, TYPICAL_GEN)]
        if best.gen_tps <= 0 or best.prompt_tps <= 0:
            raise ModelError(f"model {name!r}: the profile runs produced no timing")

        set_threads(llm, best.threads)
        ttfts: list[float] = []
        for i in range(plan.ttft_repeats):
            if i > 0 and time.perf_counter() + ttft_reserve() > deadline:
                reasons.append(f"{i} of {plan.ttft_repeats} TTFT samples fitted in the budget")
                break
            time.sleep(IDLE_S)
            ttfts.append(timed_run(llm, chat, 1, cancel=cancel).prompt_s * 1000)
        other_load, steal, spread, noise = _noise(meter, runs)
        if noise:
            log(f"{name}: measured under load ({noise}): applied for now, to be measured again when idle")
    finally:
        llm.close()

    model_bytes = path.stat().st_size
    roofline = bandwidth_gbps * 1e9 / model_bytes if bandwidth_gbps else None
    return ModelProfile(
        name=name, model_path=str(path), sha256=sha256, model_bytes=model_bytes, fingerprint=fingerprint,
        llama_version=llama_cpp.__version__, prompt_tps=best.prompt_tps, gen_tps=best.gen_tps,
        best_threads=best.threads, ttft_ms=statistics.median(ttfts), load_s=load_s, warmup_s=warmup_s,
        rss_bytes=rss_bytes, rss_load_bytes=rss_load, bandwidth_gbps=bandwidth_gbps, roofline_tps=roofline,
        roofline_fraction=best.gen_tps / roofline if roofline else None,
        by_threads=sorted(results.values(), key=lambda r: r.threads), prompt_tokens=len(prompt),
        gen_tokens=plan.gen_tokens, repeats=plan.repeats, truncated=bool(reasons),
        truncated_reason="; ".join(reasons), budget_s=budget_s, elapsed_s=time.perf_counter() - started,
        measured_at=time.time(), n_gpu_layers=n_gpu_layers, other_load=other_load, steal=steal, spread=spread,
        noisy=bool(noise), noise_reason=noise)


def ensure_profile(model_path: Path, sha256: str, *, budget_s: float = 20.0, directory: Path | None = None,
                   name: str = "", n_gpu_layers: int = 0, log: Callable[[str], None] = lambda _m: None,
                   cancel: threading.Event | None = None, fresh: bool = False) -> ModelProfile:
    """The stored profile for (this hardware, `sha256`, this llama-cpp-python), or (none
    stored, or `fresh`) one measured within about `budget_s` seconds (bandwidth test
    included) and saved. Blocks: call it off the event loop. A cache directory that
    cannot be written costs only the persistence, never the profile. A fresh profile
    that is noisy does not replace a stored one that is not."""
    import llama_cpp

    started = time.perf_counter()
    hw = collect_hardware(bandwidth=False)
    hit = load_profile(hw.fingerprint, sha256, llama_cpp.__version__, directory)
    if hit is not None and not fresh:
        return hit
    if cancel is not None and cancel.is_set():
        raise ProfileCancelled("profile cancelled")
    bandwidth = measure_bandwidth_gbps()
    remaining = max(0.0, budget_s - (time.perf_counter() - started))
    profile = profile_model(model_path, sha256=sha256, name=name, budget_s=remaining, bandwidth_gbps=bandwidth,
                            fingerprint=hw.fingerprint,
                            candidates=thread_candidates(hw.physical_cores, hw.logical_cores),
                            n_gpu_layers=n_gpu_layers, log=log, cancel=cancel)
    if hit is not None and profile.noisy and not hit.noisy:
        return hit
    try:
        save_profile(profile, directory)
    except OSError as exc:
        log(f"{profile.name}: profile not saved: {exc}")
    return profile
