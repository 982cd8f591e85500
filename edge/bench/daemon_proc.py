"""`edge serve` in a subprocess for a benchmark: written config, own ledger, time to SERVING."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

__all__ = ["BenchDaemon", "DaemonStartError", "start_daemon", "stop_daemon"]


class DaemonStartError(EdgeError):
    """`edge serve` exited, or did not become SERVING in time; the message holds its log."""


@dataclass
class BenchDaemon:
    """A running daemon: its process, gRPC target, bound addresses and the seconds from
    launch to health SERVING (cold start: interpreter, imports, model load, listeners)."""

    proc: subprocess.Popen[bytes]
    target: str
    addresses: dict[str, str]
    cold_start_s: float
    log_path: Path


def _bench_env(workdir: Path, keep_edge_env: bool) -> dict[str, str]:
    # EDGE_* variables override the config file: a benchmark's own settings must win, so only
    # the models directory (where the operator keeps the models) passes through.
    env = {k: v for k, v in os.environ.items()
           if keep_edge_env or not k.startswith("EDGE_") or k == "EDGE_MODELS_DIR"}
    # Its own ledger (and answer cache, calibration labels) in the work folder: a benchmark
    # must not write into the user's real ledger, or read what earlier runs spent.
    env["EDGE_LEDGER"] = str(workdir / "ledger.sqlite3")
    return env


def _wait_serving(target: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    # The health service, not GetStatus: it answers without a token when the doors are closed.
    with grpc.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    return False


def start_daemon(cfg: str, workdir: Path, timeout_s: float = 180.0, cwd: Path | None = None,
                 keep_edge_env: bool = False) -> BenchDaemon:
    """Write `cfg`, run `edge serve` on it (this interpreter), wait until it reports
    SERVING. Raises DaemonStartError with the daemon's log when it does not.
    `keep_edge_env`: pass EDGE_* variables through (they override `cfg`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "edge.toml").write_text(cfg, encoding="utf-8")
    addr, log_path = workdir / "addr.json", workdir / "daemon.log"
    addr.unlink(missing_ok=True)
    t0 = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "serve", "-c", str(workdir / "edge.toml"),
                                 "--address-file", str(addr)], cwd=cwd or workdir, stdout=subprocess.DEVNULL,
                                stderr=log, env=_bench_env(workdir, keep_edge_env))
    deadline = t0 + timeout_s
    while not addr.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_daemon(proc)
            raise DaemonStartError("daemon failed to start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.02)
    addresses = json.loads(addr.read_text())
    if not _wait_serving(addresses["tcp"], proc, deadline):
        stop_daemon(proc)
        raise DaemonStartError("daemon never became SERVING:\n" + log_path.read_text(errors="replace"))
    return BenchDaemon(proc, addresses["tcp"], addresses, time.monotonic() - t0, log_path)


def stop_daemon(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
