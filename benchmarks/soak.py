"""Does the daemon's memory stay flat under hours-like steady traffic? (a bounded soak)

Runs `edge serve` with the real default GGUF model (no remote tiers, no start-up
profile, ledger in a temporary directory) and sends `--requests` requests at a
steady rate over `--minutes` from 2 clients (each its own channel). The mix, fixed
by `--seed`: short, medium and long prompts; max_tokens 8-48; unary Generate and
GenerateStream about half each; ~5% streams the client cancels after 1-4 deltas
and ~5% requests with a 50-300 ms deadline (expiring queued, in prefill or in
decode). Those two exercise the cleanup paths, where leaks hide, and count as
`cancelled` / `deadline`; one that finished first counts as ok; any other failure
is an error. The daemon's RSS (psutil, the `edge serve` process) is sampled every
few seconds.

The first minute (20% of the run with --quick) is warm-up, where allocator pools,
llama.cpp buffers and gRPC channels settle. rss_growth = rss_end / rss_start - 1,
from the first sample after warm-up to one taken once every answer is in (target
<= 0.10); rss_peak_mb is over all samples. Per minute (by send time): requests,
p50/p99 of the ok ones, the minute's last RSS sample. Prints one JSON object and
draws a PNG (--png): the full default run updates the tracked docs/soak.png; a
--quick or shortened run writes benchmarks/results/soak_quick.png (or soak.png),
which git ignores. Exits 0 whether or not the target is met (it reports, it is
not a test); non-zero only if the daemon died.

    .venv/bin/python benchmarks/soak.py --quick      # 2 minutes, 120 requests
    .venv/bin/python benchmarks/soak.py              # 10 minutes, 600 requests
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, pct, start_daemon  # noqa: E402

from edge.client import Client  # noqa: E402

TOPICS = ["the sea", "a lighthouse", "bread", "winter", "a bicycle", "owls", "rain on a roof", "a library",
          "volcanoes", "a chess game", "tea", "the moon", "a train station", "bees", "an old map", "autumn"]
FILLER = ("The committee met on a grey Tuesday to review the harbour accounts, the repairs to the north pier, "
          "the price of diesel for the ferries and a long letter from the fishermen's association. ")
RSS_GROWTH_MAX = 0.10


def ms(xs: list[float], q: float) -> float | None:
    """Percentile rounded for the report; None (valid JSON, unlike NaN) when there is no data."""
    return round(pct(xs, q), 1) if xs else None


@dataclass(frozen=True)
class Job:
    i: int
    kind: str  # unary | stream | cancel | deadline
    prompt: str
    max_tokens: int
    timeout_s: float
    cancel_after: int  # deltas before the client cancels ("cancel" only)


@dataclass(frozen=True)
class Outcome:
    t: float  # send time, s since the run started
    lag: float  # s the send was behind its slot: > 0 when the offered rate outruns the daemon
    result: str  # ok | cancelled | deadline | <grpc status name> | NO_FINAL
    ms: float


def plan(n: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        r = rng.random()
        kind = "cancel" if r < 0.05 else "deadline" if r < 0.10 else "stream" if r < 0.55 else "unary"
        topic = rng.choice(TOPICS)
        size = rng.choice(("short", "medium", "long"))
        prompt = (f"Request {i}. Write about {topic}." if size == "short"
                  else f"Request {i}. In two or three sentences, describe {topic} to a child, then give one fact."
                  if size == "medium" else f"Request {i}. {FILLER * rng.randint(3, 6)}Summarize this in one line.")
        # Cancels and deadlines ask for the most tokens so they land mid-generation, not after it.
        max_tokens = 48 if kind in ("cancel", "deadline") else rng.randint(8, 48)
        timeout_s = rng.uniform(0.05, 0.3) if kind == "deadline" else 120.0
        jobs.append(Job(i, kind, prompt, max_tokens, timeout_s, rng.randint(1, 4)))
    return jobs


def run_one(client: Client, job: Job) -> str:
    kw = {"max_tokens": job.max_tokens, "temperature": 0.8, "seed": job.i, "timeout": job.timeout_s}
    try:
        if job.kind == "unary" or (job.kind == "deadline" and job.i % 2 == 0):
            client.ask(job.prompt, **kw)
            return "ok"
        it = client.stream(job.prompt, **kw)
        deltas, final = 0, False
        for msg in it:
            event = msg.WhichOneof("event")
            deltas += event == "delta"
            final = final or event == "final"
            if job.kind == "cancel" and deltas >= job.cancel_after:
                it.cancel()  # the client walks away mid-stream: the daemon must free the model and the call
                return "cancelled"
        return "ok" if final else "NO_FINAL"
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        return "deadline" if job.kind == "deadline" and code == grpc.StatusCode.DEADLINE_EXCEEDED else code.name
    except Exception as exc:  # noqa: BLE001 - an error to count, not a reason to lose this client's thread
        return type(exc).__name__


def worker(target: str, jobs: list[Job], next_index: itertools.count[int], lock: threading.Lock,
           t0: float, interval: float, out: list[Outcome], dead: threading.Event) -> None:
    with Client(target) as client:
        while not dead.is_set():
            with lock:
                i = next(next_index)
            if i >= len(jobs):
                return
            # Send at the scheduled slot (steady rate); a worker running late sends at once.
            if dead.wait(max(0.0, t0 + i * interval - time.perf_counter())):
                return
            sent = time.perf_counter()
            result = run_one(client, jobs[i])
            out.append(Outcome(sent - t0, sent - t0 - i * interval, result, (time.perf_counter() - sent) * 1000))


def sampler(proc: subprocess.Popen[bytes], t0: float, every: float, samples: list[tuple[float, float]],
            done: threading.Event, dead: threading.Event) -> None:
    ps = psutil.Process(proc.pid)
    while True:
        try:
            if proc.poll() is not None:  # a dead, unreaped daemon still answers psutil, with rss=0
                raise psutil.NoSuchProcess(proc.pid)
            samples.append((time.perf_counter() - t0, ps.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            dead.set()  # stops the workers: no point sending to a dead daemon
            return
        if done.wait(every):
            return


def plot(samples: list[tuple[float, float]], per_minute: list[dict[str, float | None]], warmup_s: float,
         rss_start: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 6), dpi=120, sharex=True)
    ax1.plot([t / 60 for t, _ in samples], [r for _, r in samples], color="tab:blue", lw=1.4, label="RSS")
    ax1.axvspan(0, warmup_s / 60, color="lightgrey", alpha=0.5, label="warm-up")
    ax1.axhline(rss_start * (1 + RSS_GROWTH_MAX), color="tab:red", ls="--", lw=1,
                label=f"target: +{RSS_GROWTH_MAX:.0%} over post-warm-up start")
    ax1.set(ylabel="daemon RSS (MiB)")
    ax1.legend(fontsize=8, loc="lower right")
    xs = [float(m["minute"] or 0) + 0.5 for m in per_minute]  # a minute's numbers drawn at its middle
    nan = float("nan")
    ax2.plot(xs, [m["p50_ms"] or nan for m in per_minute], "o-", color="tab:green", label="p50")
    ax2.plot(xs, [m["p99_ms"] or nan for m in per_minute], "s-", color="tab:orange", label="p99")
    ax2.set(xlabel="minutes since start", ylabel="latency of ok requests (ms)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def default_png(*, quick: bool, shortened: bool) -> Path:
    """Only the documented full run may replace the tracked docs/soak.png; anything
    shorter goes to benchmarks/results/ (git-ignored)."""
    if quick:
        return ROOT / "benchmarks" / "results" / "soak_quick.png"
    if shortened:
        return ROOT / "benchmarks" / "results" / "soak.png"
    return ROOT / "docs" / "soak.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 minutes, 120 requests, 20%% warm-up")
    ap.add_argument("--minutes", type=float, default=0.0, help="run length (default 10; 2 with --quick)")
    ap.add_argument("--requests", type=int, default=0, help="requests spread evenly over it (default 600; 120)")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--sample-s", type=float, default=0.0, help="RSS sampling period (default 5 s; 2 s with --quick)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--png", type=Path, default=None,
                    help="where to draw the plot (default: docs/soak.png for the full run, "
                         "benchmarks/results/ otherwise)")
    args = ap.parse_args()
    if args.png is None:
        args.png = default_png(quick=args.quick, shortened=bool(args.minutes or args.requests))
    minutes = args.minutes or (2.0 if args.quick else 10.0)
    n = args.requests or (120 if args.quick else 600)
    every = args.sample_s or (2.0 if args.quick else 5.0)
    duration = minutes * 60
    # Never let warm-up swallow most of a short custom run.
    warmup_s = min(0.2 * duration if args.quick else 60.0, 0.5 * duration)
    jobs = plan(n, args.seed)
    interval = duration / n

    outcomes: list[Outcome] = []
    samples: list[tuple[float, float]] = []
    done, dead = threading.Event(), threading.Event()
    exit_code: int | None = None
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = start_daemon(f"""
log_level = "warning"
ledger_path = "{Path(tmp) / 'ledger.sqlite'}"   # keep 600 soak rows out of the user's ledger
[server]
listen = "127.0.0.1:0"
[routing]
profile_on_start = false    # short start-up; nothing else in the background
""", Path(tmp))
        try:
            with Client(target) as c:
                model = c.status().default_model
            t0 = time.perf_counter()
            threads = [threading.Thread(target=sampler, args=(proc, t0, every, samples, done, dead), daemon=True)]
            count, lock = itertools.count(), threading.Lock()
            threads += [threading.Thread(target=worker, args=(target, jobs, count, lock, t0, interval, outcomes, dead))
                        for _ in range(args.clients)]
            for th in threads:
                th.start()
            for th in threads[1:]:
                th.join()
            done.set()
            threads[0].join()
            # The final sample: every answer is in, cancelled calls have had a moment to be torn down.
            time.sleep(min(every, 2.0))
            if proc.poll() is None:
                samples.append((time.perf_counter() - t0, psutil.Process(proc.pid).memory_info().rss / 2**20))
            exit_code = proc.poll()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        died = exit_code is not None
        if died:
            print((Path(tmp) / "daemon.log").read_text()[-4000:], file=sys.stderr)

    after = [r for t, r in samples if t >= warmup_s] or [samples[-1][1]]
    rss_start, rss_end = after[0], samples[-1][1]
    growth = rss_end / rss_start - 1
    results = Counter(o.result for o in outcomes)
    errors = {k: v for k, v in results.items() if k not in ("ok", "cancelled", "deadline")}
    ok_ms = [o.ms for o in outcomes if o.result == "ok"]
    # By send time; when the daemon falls behind, sends (and so minutes) run past --minutes: shown, not folded in.
    buckets = max(math.ceil(minutes), *(int(o.t // 60) + 1 for o in outcomes))
    per_minute: list[dict[str, float | None]] = []
    for m in range(buckets):
        sent = [o for o in outcomes if int(o.t // 60) == m]
        lat = [o.ms for o in sent if o.result == "ok"]
        rss = [r for t, r in samples if int(t // 60) == m]
        per_minute.append({"minute": m, "requests": len(sent), "p50_ms": ms(lat, 0.5), "p99_ms": ms(lat, 0.99),
                           "rss_mb": round(rss[-1], 1) if rss else None})
    out = {
        "benchmark": "soak", "model": model, "requests": len(outcomes), "errors": sum(errors.values()),
        "cancelled": results["cancelled"], "deadline": results["deadline"], "ok": results["ok"],
        "errors_by_status": errors, "planned": dict(Counter(j.kind for j in jobs)),
        "minutes": minutes, "clients": args.clients, "rate_rps": round(n / duration, 3), "warmup_s": warmup_s,
        "rss_samples": len(samples), "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(max(r for _, r in samples), 1), "rss_growth": round(growth, 4),
        "target": {"rss_growth_max": RSS_GROWTH_MAX, "met": growth <= RSS_GROWTH_MAX and not died},  # a crash: no pass
        "p50_ms": ms(ok_ms, 0.5), "p99_ms": ms(ok_ms, 0.99), "wall_s": round(samples[-1][0], 1),
        "max_send_lag_s": round(max((o.lag for o in outcomes), default=0.0), 1),
        "per_minute": per_minute, "daemon_died": died, "daemon_exit_code": exit_code,
        "png": str(png.relative_to(ROOT) if (png := args.png.resolve()).is_relative_to(ROOT) else png),
    }
    plot(samples, per_minute, warmup_s, rss_start,
         args.png, f"edge soak: {model}, {len(outcomes)} requests over {minutes:g} min, {args.clients} clients")
    print(json.dumps(out, indent=2))
    return 1 if died else 0


if __name__ == "__main__":
    sys.exit(main())
