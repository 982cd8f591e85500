"""What every benchmark needs: `edge serve` in a subprocess, serving, and percentiles.

Both live in the package (edge.bench.daemon_proc, edge.bench.stats), where `edge bench`
uses them on an installed box; these are the scripts' thin entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench.daemon_proc import DaemonStartError  # noqa: E402
from edge.bench.daemon_proc import start_daemon as _start  # noqa: E402
from edge.bench.stats import pct  # noqa: E402

__all__ = ["ROOT", "pct", "start_daemon"]


def start_daemon(cfg: str, workdir: Path, timeout_s: float = 180.0) -> tuple[subprocess.Popen[bytes], str]:
    """Write `cfg`, run `edge serve` on it, wait until it reports SERVING; (process, target).
    The daemon keeps its own ledger in `workdir`; EDGE_* variables pass through."""
    try:
        daemon = _start(cfg, workdir, timeout_s, cwd=ROOT, keep_edge_env=True)
    except DaemonStartError as exc:
        raise SystemExit(str(exc)) from None
    return daemon.proc, daemon.target
