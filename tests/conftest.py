"""Shared fixtures: real daemons in subprocesses on ephemeral ports, real models."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge.catalog import default_models_dir, load_manifest
from edge.client import Client
from edge.testing.providers import ProviderServer

ROOT = Path(__file__).resolve().parents[1]
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a paid provider by accident."""
    for key in PROVIDER_KEYS:
        monkeypatch.delenv(key, raising=False)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it is true (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


TOKEN_A = "tok-alpha-0123456789abcdef"
TOKEN_B = "tok-bravo-0123456789abcdef"


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def health_status(target: str, service: str = "", timeout: float = 5.0) -> int:
    with grpc.insecure_channel(target) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class DaemonProcess:
    """`edge serve` in a subprocess; `target` is its bound TCP address."""

    def __init__(self, proc: subprocess.Popen[bytes], addresses: dict[str, str], log_path: Path) -> None:
        self.proc = proc
        self.addresses = addresses
        self.target = addresses.get("tcp", "")
        self.log_path = log_path

    def client(self) -> Client:
        return Client(self.target)

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if health_status(self.target, timeout=1.0) == SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon not SERVING after {timeout}s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_daemon(tmp_path: Path, config: str, *, name: str = "daemon", wait_serving: bool = True,
                 env: dict[str, str] | None = None, open_files: int | None = None) -> DaemonProcess:
    """`edge serve` on `config`; `open_files` caps its file descriptors (soft and hard)."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(config, encoding="utf-8")
    addr = tmp_path / f"{name}.addr.json"
    addr.unlink(missing_ok=True)  # a restart under the same name must not read the old port
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--config", str(cfg), "--address-file", str(addr)],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=_file_limit(open_files),
            # Each daemon keeps its own ledger: spending must not leak between tests.
            env={**os.environ, "EDGE_LEDGER": str(tmp_path / f"{name}.ledger.sqlite3"), **(env or {})})
    deadline = time.monotonic() + 60
    while not addr.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"daemon did not listen:\n{log_path.read_text()}")
        time.sleep(0.02)
    daemon = DaemonProcess(proc, json.loads(addr.read_text()), log_path)
    if wait_serving:
        daemon.wait_serving()
    return daemon


def _file_limit(n: int | None):  # type: ignore[no-untyped-def]
    if n is None:
        return None

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def fake_config(*, reply: str = "", token_delay_ms: float = 0, load_delay_ms: float = 0, queue_size: int = 8,
                n_ctx: int = 2048, grace_s: float = 10, extra: str = "", server_extra: str = "",
                shadow_rate: float = 0.0) -> str:
    """A daemon on the fake backend. Shadow sampling is off unless asked for (`shadow_rate`):
    a test that counts what a provider received must not see a random shadow call."""
    return f"""
[server]
listen = "127.0.0.1:0"
shutdown_grace_s = {grace_s}
{server_extra}

[calibration]
shadow_rate = {shadow_rate}

[local]
default_model = "fake"
queue_size = {queue_size}
n_ctx = {n_ctx}

[[local.models]]
name = "fake"
backend = "fake"
fake_reply = {json.dumps(reply)}
fake_token_delay_ms = {token_delay_ms}
fake_load_delay_ms = {load_delay_ms}
{extra}
"""


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    started: list[DaemonProcess] = []

    def make(config: str, **kw: object) -> DaemonProcess:
        d = start_daemon(tmp_path, config, name=f"d{len(started)}", **kw)  # type: ignore[arg-type]
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture
def loopback() -> Iterator:
    """Start loopback providers (`loopback(kind="openai", reply=...)`); all stopped after the test."""
    started: list[ProviderServer] = []

    def make(kind: str = "openai", **kw: object) -> ProviderServer:
        srv = ProviderServer(kind, **kw).start()  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The real default GGUF, installed by `scripts/setup.sh` (`edge models pull`)."""
    spec = load_manifest().get(load_manifest().default)
    path = default_models_dir() / spec.file
    if not path.is_file():
        pytest.fail(f"default model missing at {path}: run `edge models pull` (scripts/setup.sh does)")
    return path


@pytest.fixture(scope="session")
def model_daemon(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> Iterator[DaemonProcess]:
    """One real daemon with the real SmolLM2 model for the whole session."""
    tmp = tmp_path_factory.mktemp("model-daemon")
    config = """
[server]
listen = "127.0.0.1:0"
[local]
queue_size = 2
n_ctx = 2048
[routing]
profile_on_start = false   # no background measurement competing with the tests
"""
    d = start_daemon(tmp, config, name="model")
    yield d
    d.stop()


# -- the core in-process: no subprocess, no socket, a fake clock -------------------------------

class FakeClock:
    """A clock the test moves: breakers read it, nobody sleeps for it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def remote_entries(*remotes: tuple[str, str, str], timeout_s: float = 0.3, extra: str = "") -> str:
    """[[onprem]]/[[cloud]] entries for (tier, name, kind); each backend's host is its name,
    which edge.testing.transport.Hosts routes to that backend's in-process provider."""
    return "".join(f"""
[[{tier}]]
name = "{name}"
kind = "{kind}"
base_url = "http://{name}"
model = "test-model"
connect_timeout_s = {timeout_s}
first_byte_timeout_s = {timeout_s}
idle_timeout_s = {timeout_s}
total_timeout_s = 10
{extra}
""" for tier, name, kind in remotes)


def core_settings(tmp_path: Path, toml: str):  # type: ignore[no-untyped-def]
    from edge.config import load_settings

    cfg = tmp_path / "core.toml"
    cfg.write_text(f'ledger_path = "{tmp_path / "ledger.sqlite3"}"\n' + toml, encoding="utf-8")
    return load_settings(cfg, environ={})


_REQUEST_IDS = itertools.count(1)


class Core:
    """An Engine built in-process (the fake local model, in-process providers by host)."""

    def __init__(self, settings, providers: dict, **injected) -> None:  # type: ignore[no-untyped-def]
        from edge.engine import Engine
        from edge.runtime import Injected
        from edge.testing.transport import Hosts

        self.providers = providers
        self.engine = Engine(settings, Injected(transport=Hosts(providers), **injected))

    async def __aenter__(self) -> Core:
        await self.engine.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.close()

    async def ask(self, text: str = "Tell me about the fox.", *, stream: bool = False, timeout: float | None = 10,
                  request_id: str = "", **draft: object):  # type: ignore[no-untyped-def]
        """(the Result, every event before it) for one request."""
        from edge.pipeline.admission import Arrival
        from edge.types import Result
        from edge.validation import Draft

        events = []
        # A counter, not id(): ids of freed lists repeat, and the fleet deduplicates spend by request id.
        arrival = Arrival(request_id or f"r{next(_REQUEST_IDS)}", "test", stream=stream, time_remaining=timeout)
        async for event in self.engine.serve(Draft(messages=[("user", text)], **draft), arrival):  # type: ignore[arg-type]
            events.append(event)
        assert isinstance(events[-1], Result)
        return events[-1], events[:-1]

    def status(self):  # type: ignore[no-untyped-def]
        return self.engine.snapshot(budgets=False)
