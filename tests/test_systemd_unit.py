"""deploy/systemd/edge.service: the command, flags, environment and directories it names
exist in edge, and systemd itself accepts the file (where systemd-analyze is installed)."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import platformdirs
import pytest

from edge.bundle import DEFAULT_CONFIG
from edge.catalog import default_models_dir
from edge.cli import build_parser, cmd_serve
from edge.config import ENV_OVERRIDES, ServerSettings, load_settings
from edge.ledger import default_ledger_path
from tests.conftest import fake_config, start_daemon

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "edge.service"


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(key, value)] in order; repeated keys (Environment=) are all kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"key outside a section: {line}"
        assert not line.endswith("\\"), "no continuation lines, please"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.append((key.strip(), value.strip()))
    return sections


UNIT_SECTIONS = parse_unit(UNIT.read_text(encoding="utf-8"))
SERVICE = UNIT_SECTIONS["Service"]


def one(key: str) -> str:
    values = [v for k, v in SERVICE if k == key]
    assert len(values) == 1, f"{key}= appears {len(values)} times"
    return values[0]


def environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for k, v in SERVICE:
        if k == "Environment":
            for item in shlex.split(v):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def test_exec_start_is_a_valid_edge_serve_command() -> None:
    argv = shlex.split(one("ExecStart"))
    assert argv[0] == "/opt/edge/bin/edge"
    args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown flag
    assert args.func is cmd_serve and args.config == "/etc/edge/edge.toml"


def test_reload_sends_hup_and_stop_outlasts_the_grace(tmp_path: Path) -> None:
    assert shlex.split(one("ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert one("KillSignal") == "SIGTERM" and one("Restart") == "on-failure" and one("Type") == "simple"
    bundled = tmp_path / "edge.toml"  # the config an offline bundle installs at /etc/edge/edge.toml
    bundled.write_text(DEFAULT_CONFIG, encoding="utf-8")
    grace = max(ServerSettings().shutdown_grace_s, load_settings(bundled, environ={}).server.shutdown_grace_s)
    assert float(one("TimeoutStopSec")) > grace


def test_hardening_and_directories() -> None:
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "User": "edge", "Group": "edge", "StateDirectory": "edge",
                       "CacheDirectory": "edge", "RuntimeDirectory": "edge"}.items():
        assert one(key) == value, key
    assert UNIT_SECTIONS["Install"] == [("WantedBy", "multi-user.target")]


def test_every_environment_variable_is_one_edge_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment()
    assert set(env) == {"EDGE_MODELS_DIR", "EDGE_LEDGER", "EDGE_UNIX_SOCKET", "XDG_CACHE_HOME"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Read the way the daemon reads them.
    settings = load_settings()
    assert default_models_dir(settings.local.models_dir) == Path(env["EDGE_MODELS_DIR"])
    assert default_ledger_path() == Path(env["EDGE_LEDGER"])
    assert settings.server.unix_socket == env["EDGE_UNIX_SOCKET"]
    assert Path(platformdirs.user_cache_dir("edge")) == Path(env["XDG_CACHE_HOME"]) / "edge"  # profiles
    assert {n for n in env if n.startswith("EDGE_")} - {"EDGE_LEDGER"} <= set(ENV_OVERRIDES)
    # ProtectSystem=strict: everything edge writes lies in the directories systemd makes writable.
    state, cache, runtime = (Path("/var/lib") / one("StateDirectory"), Path("/var/cache") / one("CacheDirectory"),
                             Path("/run") / one("RuntimeDirectory"))
    assert Path(env["EDGE_MODELS_DIR"]).is_relative_to(state) and Path(env["EDGE_LEDGER"]).is_relative_to(state)
    assert Path(env["XDG_CACHE_HOME"]) == cache and Path(env["EDGE_UNIX_SOCKET"]).parent == runtime


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify insists that ExecStart's binary exists: point it at this environment's edge.
    edge = Path(sys.executable).parent / "edge"
    assert edge.is_file()
    unit = tmp_path / "edge.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/edge/bin/edge", str(edge)), encoding="utf-8")
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    # It exits 0 on a value it cannot parse (it ignores the line), so any output is a failure too.
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_reload_without_a_tokens_file_keeps_the_daemon_running(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, fake_config())
    try:
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "nothing to reload" not in d.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "nothing to reload" in d.logs()
        assert d.proc.poll() is None
        assert d.client().ask("hi", timeout=5).text
    finally:
        if d.proc.poll() is None:
            d.stop()
