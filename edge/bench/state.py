"""What one `edge bench` run is asked to do, and what its sections share while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench.daemon_proc import BenchDaemon, stop_daemon
from edge.bench.sampler import Sampler
from edge.bench.targets import ModelTarget

__all__ = ["QUICK_BUDGET_S", "DEFAULT_BUDGET_S", "DEFAULT_P99_MS", "BenchOptions", "BenchState"]

QUICK_BUDGET_S = 70.0      # `--quick`: under 90 s on the 2-core target, start-up and report included
DEFAULT_BUDGET_S = 240.0   # the default run: under 5 minutes there
DEFAULT_P99_MS = 2000.0    # the capacity section's stated limit on p99 latency


@dataclass(frozen=True)
class BenchOptions:
    """`edge bench`'s options. `budget_s` None: QUICK_BUDGET_S or DEFAULT_BUDGET_S;
    `threads` empty: 1..physical cores (the profiler's candidates)."""

    out_dir: Path
    quick: bool = False
    budget_s: float | None = None
    threads: tuple[int, ...] = ()
    config: str | None = None
    model: str = ""
    p99_limit_ms: float = DEFAULT_P99_MS
    progress: bool = True

    @property
    def budget(self) -> float:
        return self.budget_s or (QUICK_BUDGET_S if self.quick else DEFAULT_BUDGET_S)


@dataclass
class BenchState:
    """Shared by the sections of one run: the models, the thread counts, the machine
    sampler, and the daemon and loopback remote the daemon section starts (the capacity
    section uses them, the run stops them)."""

    options: BenchOptions
    settings: Any
    targets: list[ModelTarget]
    threads: list[int]
    hw: Any
    sampler: Sampler
    workdir: Path
    n_ctx: int = 2048
    best_threads: int = 0
    daemon: BenchDaemon | None = None
    remote: Any = None
    client: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def default_target(self) -> ModelTarget | None:
        return next((t for t in self.targets if t.default), None)

    @property
    def threads_for_serving(self) -> int:
        return self.best_threads or self.threads[0]

    def stop_daemon(self) -> None:
        """Stop the daemon (and its client) and the loopback remote, if running."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.daemon is not None:
            self.sampler.watch(None)
            stop_daemon(self.daemon.proc)
            self.daemon = None
        if self.remote is not None:
            self.remote.stop()
            self.remote = None
