"""What every benchmark needs: `edge serve` in a subprocess, serving, and percentiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


__all__ = ["ROOT", "pct", "start_daemon"]


def start_daemon(cfg: str, workdir: Path, timeout_s: float = 180.0) -> tuple[subprocess.Popen[bytes], str]:
    """Write `cfg`, run `edge serve` on it, wait until it reports SERVING; (process, target)."""
    (workdir / "edge.toml").write_text(cfg)
    addr = workdir / "addr.json"
    addr.unlink(missing_ok=True)
    # Its own ledger (and answer cache, calibration labels) in the work folder: a benchmark
    # must not write into the user's real ledger, or read what earlier runs spent.
    env = {**os.environ, "EDGE_LEDGER": str(workdir / "ledger.sqlite3")}
    proc = subprocess.Popen([sys.executable, "-m", "edge", "serve", "-c", str(workdir / "edge.toml"),
                             "--address-file", str(addr)], cwd=ROOT, stderr=(workdir / "daemon.log").open("wb"),
                            env=env)
    deadline = time.monotonic() + timeout_s
    while not addr.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("daemon failed to start:\n" + (workdir / "daemon.log").read_text())
        time.sleep(0.05)
    target = json.loads(addr.read_text())["tcp"]
    # The health service, not GetStatus: it answers without a token when the doors are closed.
    with grpc.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return proc, target
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("daemon never became SERVING:\n" + (workdir / "daemon.log").read_text())
            time.sleep(0.05)


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); NaN for no data."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")
