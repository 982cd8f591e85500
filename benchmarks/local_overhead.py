"""What does the daemon cost over calling llama-cpp-python directly, and over the
least a gRPC server streaming the same generation could cost?

Streams the same prompt, max_tokens, threads and model (a) through `edge serve`
over gRPC, (b) with llama-cpp-python in this process, and (c) through a minimal
grpc.aio server (written below, ~40 lines: the same generation streamed token by
token from a worker thread, no routing) in its own process, interleaved in one run
(the order rotates each repeat so drift on a shared machine hits all three), and
prints one JSON object:

  direct_tokens_per_s, daemon_tokens_per_s,  median decode rate seen by the client
  baseline_tokens_per_s                      ((tokens - 1) / (last token - first token))
  ratio                                      daemon / direct (target >= 0.97)
  ttft_overhead_ms_p50                       median of paired (daemon TTFT - direct TTFT) over many
                                             short runs (target <= 2)
  baseline_ratio                             daemon / minimal gRPC server (target >= 0.98)
  baseline_ttft_overhead_ms_p50              median of paired (daemon TTFT - baseline TTFT) (target <= 1)

Each repeat uses a prompt neither side has seen, so both evaluate it in full, and
each run starts after a short pause so the other side's llama.cpp threads have
stopped spinning.

    .venv/bin/python benchmarks/local_overhead.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import start_daemon  # noqa: E402

from edge.backends.llama import default_threads  # noqa: E402
from edge.bench.daemon import NAMES, PROMPT, stream_daemon, stream_direct  # noqa: E402
from edge.catalog import default_models_dir, load_manifest  # noqa: E402
from edge.client import Client  # noqa: E402


def start_bench_daemon(model: Path, threads: int, n_ctx: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_daemon(f"""
log_level = "warning"
[server]
listen = "127.0.0.1:0"
[routing]
profile_on_start = false  # nothing in the background while we measure
[local]
default_model = "bench"
n_threads = {threads}
n_ctx = {n_ctx}
[[local.models]]
name = "bench"
path = "{model}"
""", workdir)


def serve_baseline(model: str, threads: int, n_ctx: int, address_file: str) -> None:
    """The baseline: llama-cpp-python's stream, one gRPC message per piece of text, nothing else."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    import llama_cpp

    from edge.v1 import router_pb2 as pb
    from edge.v1 import router_pb2_grpc as pb_grpc

    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    worker = ThreadPoolExecutor(max_workers=1)  # one generation at a time, off the event loop

    class Minimal(pb_grpc.EdgeRouterServicer):
        async def GenerateStream(self, request, context):  # type: ignore[no-untyped-def]
            loop, queue = asyncio.get_running_loop(), asyncio.Queue()  # type: ignore[var-annotated]

            def work() -> None:
                for chunk in llm.create_chat_completion([{"role": "user", "content": request.messages[-1].content}],
                                                        max_tokens=request.params.max_tokens, temperature=0, stream=True):
                    if text := chunk["choices"][0]["delta"].get("content"):
                        loop.call_soon_threadsafe(queue.put_nowait, text)
                loop.call_soon_threadsafe(queue.put_nowait, None)

            loop.run_in_executor(worker, work)
            parts = []
            while (text := await queue.get()) is not None:
                parts.append(text)
                yield pb.GenerateStreamResponse(delta=text)
            yield pb.GenerateStreamResponse(final=pb.GenerateResponse(text="".join(parts)))

    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_EdgeRouterServicer_to_server(Minimal(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        Path(address_file).write_text(f"127.0.0.1:{port}")
        await server.wait_for_termination()

    asyncio.run(main())


def start_baseline(model: Path, threads: int, n_ctx: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    addr = workdir / "baseline.addr"
    proc = subprocess.Popen([sys.executable, __file__, "--serve-baseline", str(addr), "--model", str(model),
                             "--threads", str(threads)])
    deadline = time.monotonic() + 120
    while not addr.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the baseline server did not start")
        time.sleep(0.05)
    return proc, addr.read_text()


def run_stream(client: Client, prompt: str, max_tokens: int) -> dict:  # type: ignore[type-arg]
    """One streamed request over gRPC (the daemon or the baseline); edge.bench.daemon."""
    return stream_daemon(client, prompt, max_tokens)


def run_direct(llm, prompt: str, max_tokens: int) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """The same through llama-cpp-python in this process; edge.bench.daemon."""
    return stream_direct(llm, prompt, max_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter runs (under 2 minutes here)")
    ap.add_argument("--model", help="GGUF path (default: the installed default model)")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads for both (default: physical cores)")
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--settle-ms", type=float, default=200.0,
                    help="idle pause before each timed run (0 = back to back, threads still warm)")
    ap.add_argument("--serve-baseline", metavar="ADDRESS_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_baseline:
        serve_baseline(args.model, args.threads, 2048, args.serve_baseline)
        return
    max_tokens = args.max_tokens or (128 if args.quick else 256)
    repeats = args.repeats or (16 if args.quick else 24)
    ttft_repeats = 30 if args.quick else 60
    settle_s = args.settle_ms / 1000
    threads = args.threads or default_threads()
    n_ctx = 2048
    if args.model:
        model = Path(args.model)
    else:
        manifest = load_manifest()
        model = default_models_dir() / manifest.get(manifest.default).file

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = start_bench_daemon(model, threads, n_ctx, Path(tmp))
        base_proc, base_target = start_baseline(model, threads, n_ctx, Path(tmp))
        client, base_client = Client(target), Client(base_target)
        runners = {"direct": lambda p, n: run_direct(llm, p, n), "daemon": lambda p, n: run_stream(client, p, n),
                   "baseline": lambda p, n: run_stream(base_client, p, n)}
        sides = list(runners)
        try:
            for side in sides:  # warm every path once (page cache, first-call allocations)
                runners[side](PROMPT.format(name="Warm"), 16)
            runs: dict[str, list[dict]] = {side: [] for side in sides}
            for i in range(repeats):
                prompt = PROMPT.format(name=NAMES[i % len(NAMES)] + str(i))
                for side in sides[i % 3:] + sides[:i % 3]:  # rotate the order
                    # Let the other sides' llama.cpp threads stop spinning before timing this one.
                    time.sleep(settle_s)
                    runs[side].append(runners[side](prompt, max_tokens))
            # TTFT has its own phase: many short runs, since single TTFTs on a shared
            # 2-core box scatter by +-10 ms and long runs give few samples.
            ttft_pairs = []
            for i in range(ttft_repeats):
                prompt = PROMPT.format(name=f"T{i}")
                pair = {}
                for side in sides[i % 3:] + sides[:i % 3]:
                    time.sleep(settle_s)
                    pair[side] = runners[side](prompt, 2)["ttft_ms"]
                ttft_pairs.append(pair)
            direct, daemon, baseline = runs["direct"], runs["daemon"], runs["baseline"]
            # Greedy decoding of the same prompt tokens: every side produces the same
            # text (checked below), so the daemon's exact token count applies to all.
            for other in (direct, baseline):
                for d, m in zip(other, daemon):
                    d["tokens"] = m["tokens"]
                    d["decode_tps"] = (m["tokens"] - 1) / (d["last"] - d["first"])
        finally:
            client.close()
            base_client.close()
            for p in (proc, base_proc):
                p.terminate()
                p.wait(30)

    direct_tps = statistics.median(d["decode_tps"] for d in direct)
    daemon_tps = statistics.median(m["decode_tps"] for m in daemon)
    baseline_tps = statistics.median(b["decode_tps"] for b in baseline)
    ttft_overheads = [p["daemon"] - p["direct"] for p in ttft_pairs]
    baseline_overheads = [p["daemon"] - p["baseline"] for p in ttft_pairs]
    print(json.dumps({
        "benchmark": "local_overhead",
        "model": model.name,
        "threads": threads,
        "max_tokens": max_tokens,
        "settle_ms": args.settle_ms,
        "repeats": repeats,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "direct_tokens_per_s": round(direct_tps, 2),
        "daemon_tokens_per_s": round(daemon_tps, 2),
        "ratio": round(daemon_tps / direct_tps, 4),
        # Median of per-pair ratios: robust to drift across the run.
        "ratio_paired_p50": round(statistics.median(m["decode_tps"] / d["decode_tps"] for d, m in zip(direct, daemon)), 4),
        "ttft_pairs": len(ttft_pairs),
        "direct_ttft_ms_p50": round(statistics.median(p["direct"] for p in ttft_pairs), 2),
        "daemon_ttft_ms_p50": round(statistics.median(p["daemon"] for p in ttft_pairs), 2),
        "ttft_overhead_ms_p50": round(statistics.median(ttft_overheads), 2),
        "ttft_overhead_ms_p90": round(statistics.quantiles(ttft_overheads, n=10)[-1], 2),
        "baseline_tokens_per_s": round(baseline_tps, 2),
        "baseline_ratio": round(daemon_tps / baseline_tps, 4),
        "baseline_ratio_paired_p50": round(statistics.median(
            m["decode_tps"] / b["decode_tps"] for b, m in zip(baseline, daemon)), 4),
        "baseline_ttft_ms_p50": round(statistics.median(p["baseline"] for p in ttft_pairs), 2),
        "baseline_ttft_overhead_ms_p50": round(statistics.median(baseline_overheads), 2),
        "tokens_per_run": [m["tokens"] for m in daemon],
        "outputs_identical": all(d["text"] == m["text"] == b["text"] for d, m, b in zip(direct, daemon, baseline)),
    }, indent=2))


if __name__ == "__main__":
    main()
