"""What does each front door cost? gRPC vs the OpenAI-compatible HTTP API, side by side.

One `edge serve` with the fake backend (a fixed 32-word reply, no token delay, so the
model costs next to nothing and what is measured is the door: parsing, validation,
routing, the ledger commit, serialization and the loopback socket), both listeners
on. For `--requests` rounds, interleaved and alternating which door goes first:

  unary   gRPC Generate (edge.Client, one channel)  vs  POST /v1/chat/completions
          (httpx.Client, one keep-alive connection): time to the whole answer
  stream  gRPC GenerateStream  vs  the same POST with "stream": true (SSE): time to
          the first text and to the end of the stream

Prints one JSON object: p50/p99 per door and mode, and HTTP/gRPC ratios of the p50s.

`--guarded` adds a second daemon with the doors closed (a bearer-tokens file and a
per-client rate limit too high to bite) and times unary requests through both doors
of both daemons, interleaved: what authentication and rate limiting cost per request.

    .venv/bin/python benchmarks/front_doors.py            # 300 rounds
    .venv/bin/python benchmarks/front_doors.py --quick    # 100 rounds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import pct, start_daemon  # noqa: E402

from edge.client import Client  # noqa: E402

REPLY = " ".join(f"word{i}" for i in range(32))
CONFIG = f"""
[server]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[local]
default_model = "fake"
[[local.models]]
name = "fake"
backend = "fake"
fake_reply = "{REPLY}"
[routing]
profile_on_start = false
"""
PROMPT = "Say the thirty-two words."


def grpc_unary(c: Client) -> float:
    t = time.perf_counter()
    r = c.ask(PROMPT, max_tokens=64, timeout=10)
    assert r.text == REPLY
    return time.perf_counter() - t


def grpc_stream(c: Client) -> tuple[float, float]:
    t = time.perf_counter()
    first = None
    for msg in c.stream(PROMPT, max_tokens=64, timeout=10):
        if first is None and msg.WhichOneof("event") == "delta":
            first = time.perf_counter() - t
    return first or 0.0, time.perf_counter() - t


def http_unary(h: httpx.Client, url: str) -> float:
    t = time.perf_counter()
    r = h.post(url, json={"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]})
    assert r.json()["choices"][0]["message"]["content"] == REPLY
    return time.perf_counter() - t


def http_stream(h: httpx.Client, url: str) -> tuple[float, float]:
    t = time.perf_counter()
    first = None
    body = {"model": "auto", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    with h.stream("POST", url, json=body) as r:
        for line in r.iter_lines():
            if first is None and line.startswith("data: ") and '"content": "word' in line:
                first = time.perf_counter() - t
    return first or 0.0, time.perf_counter() - t


TOKEN = "bench-token-0123456789abcdef"


def guarded_overhead(n: int) -> dict[str, object]:
    """Unary p50 through each door of an open and a guarded daemon, interleaved."""
    times: dict[str, list[float]] = {k: [] for k in ("grpc_open", "grpc_guarded", "http_open", "http_guarded")}
    with tempfile.TemporaryDirectory() as tmp_open, tempfile.TemporaryDirectory() as tmp_guarded:
        tokens = Path(tmp_guarded) / "tokens"
        tokens.write_text(f"bench {TOKEN}\n")
        tokens.chmod(0o600)
        guarded_cfg = CONFIG + f'[security]\ntokens_file = "{tokens}"\nrate_limit_per_s = 100000\n' \
                               'rate_limit_burst = 100000\n'
        procs = []
        try:
            doors = {}
            for name, cfg, tmp, token in (("open", CONFIG, tmp_open, None), ("guarded", guarded_cfg, tmp_guarded, TOKEN)):
                proc, target = start_daemon(cfg, Path(tmp))
                procs.append(proc)
                http = json.loads((Path(tmp) / "addr.json").read_text())["http"]
                headers = {"authorization": f"Bearer {token}"} if token else {}
                doors[name] = (Client(target, token=token), httpx.Client(timeout=10, headers=headers),
                               f"http://{http}/v1/chat/completions")
            for _ in range(10):
                for c, h, url in doors.values():
                    grpc_unary(c), http_unary(h, url)
            for i in range(n):
                for name in (("open", "guarded") if i % 2 == 0 else ("guarded", "open")):
                    c, h, url = doors[name]
                    times[f"grpc_{name}"].append(grpc_unary(c))
                    times[f"http_{name}"].append(http_unary(h, url))
            for c, h, _ in doors.values():
                c.close()
                h.close()
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    out: dict[str, object] = {k: summary(v) for k, v in times.items()}
    out["overhead_ms_p50"] = {door: round((pct(times[f"{door}_guarded"], 0.5) - pct(times[f"{door}_open"], 0.5)) * 1000, 3)
                              for door in ("grpc", "http")}
    return out


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(xs, 0.5) * 1000, 3), "p99_ms": round(pct(xs, 0.99) * 1000, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--guarded", action="store_true", help="also time the doors closed (tokens + rate limit)")
    args = ap.parse_args()
    n = 100 if args.quick else args.requests
    times: dict[str, list[float]] = {k: [] for k in (
        "grpc_unary", "http_unary", "grpc_stream_first", "http_stream_first", "grpc_stream_total", "http_stream_total")}
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = start_daemon(CONFIG, Path(tmp))
        try:
            http = json.loads((Path(tmp) / "addr.json").read_text())["http"]
            url = f"http://{http}/v1/chat/completions"
            with Client(target) as c, httpx.Client(timeout=10) as h:
                for _ in range(10):  # warm both doors: connections, first-call imports
                    grpc_unary(c), http_unary(h, url), grpc_stream(c), http_stream(h, url)
                for i in range(n):
                    doors = [("grpc", c), ("http", h)] if i % 2 == 0 else [("http", h), ("grpc", c)]
                    for name, client in doors:
                        if name == "grpc":
                            times["grpc_unary"].append(grpc_unary(client))  # type: ignore[arg-type]
                            first, total = grpc_stream(client)  # type: ignore[arg-type]
                        else:
                            times["http_unary"].append(http_unary(client, url))  # type: ignore[arg-type]
                            first, total = http_stream(client, url)  # type: ignore[arg-type]
                        times[f"{name}_stream_first"].append(first)
                        times[f"{name}_stream_total"].append(total)
        finally:
            proc.terminate()
            proc.wait(30)
    out = {"benchmark": "front_doors", "rounds": n, "backend": "fake (32 words, no delay)",
           **{k: summary(v) for k, v in times.items()}}
    out["ratios_http_over_grpc_p50"] = {
        mode: round(pct(times[f"http_{mode}"], 0.5) / pct(times[f"grpc_{mode}"], 0.5), 3)
        for mode in ("unary", "stream_first", "stream_total")}
    if args.guarded:
        out["guarded"] = guarded_overhead(n)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
