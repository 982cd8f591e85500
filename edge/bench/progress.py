"""The progress line `edge bench` keeps on stderr while it runs."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """`[2/5 daemon | 41 s of 60 s] stream pair 3/3`: rewritten in place on a terminal,
    one line per step otherwise (a log, a CI job); silent when not `enabled`."""

    def __init__(self, budget_s: float, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.budget_s = budget_s
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.prefix = ""
        self._width = 0

    def section(self, index: int, count: int, name: str) -> None:
        self.prefix = f"[{index}/{count} {name}"
        self("starting")

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        line = f"{self.prefix} | {elapsed:.0f} s of {self.budget_s:.0f} s] {message}"
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
