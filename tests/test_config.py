from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import Settings, load_settings
from edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def test_zero_config_defaults() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.server.listen == "127.0.0.1:50051"
    assert s.local.queue_size == 8 and s.local.n_threads == 0


def test_full_file_round_trip(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, """
log_level = "debug"
[server]
listen = "0.0.0.0:6000"
unix_socket = "/run/edge.sock"
[limits]
max_tokens_cap = 100
[local]
queue_size = 3
[[local.models]]
name = "mine"
path = "/models/mine.gguf"
"""), environ={})
    assert s.server.listen == "0.0.0.0:6000" and s.limits.max_tokens_cap == 100
    assert s.local.models[0].name == "mine" and s.local.models[0].backend == "llama"


@pytest.mark.parametrize("text,words", [
    ("[server]\nlisten_addr = 'x'\n", ["server.listen_addr", "unknown key"]),
    ("bogus = 1\n", ["bogus", "unknown key"]),
    ("[local]\nqueue_size = -1\n", ["local.queue_size", "greater than or equal to 0"]),
    ("[local]\nn_threads = 'many'\n", ["local.n_threads", "integer"]),
    ("[server]\nlisten = 'nohostport'\n", ["server.listen", "host:port"]),
    ("[server]\nlisten = 'localhost:70000'\n", ["server.listen", "65535"]),
    ("[[local.models]]\nname = 'a b'\n", ["local.models.0.name", "no spaces"]),
    ("[[local.models]]\nname = 'a'\n[[local.models]]\nname = 'a'\n", ["unique", "a"]),
    ("[[local.models]]\nname = 'a'\nbackend = 'gpt'\n", ["local.models.0.backend"]),
    ("log_level = 'loud'\n", ["log_level"]),
    ("[server\n", ["not valid TOML"]),
])
def test_bad_config_names_key_and_reason(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/edge.toml", environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[local]\nqueue_size = 3\n")
    s = load_settings(path, environ={"EDGE_QUEUE_SIZE": "5", "EDGE_LISTEN": "127.0.0.1:7000",
                                     "EDGE_MODELS_DIR": "/m", "EDGE_LOG_LEVEL": "debug"})
    assert (s.local.queue_size, s.server.listen, s.local.models_dir, s.log_level) == (5, "127.0.0.1:7000", "/m", "debug")
    with pytest.raises(ConfigError, match="local.n_threads"):
        load_settings(path, environ={"EDGE_THREADS": "lots"})


def test_cli_config_check(tmp_path: Path) -> None:
    good = write(tmp_path, "[local]\nqueue_size = 2\n")
    r = subprocess.run([sys.executable, "-m", "edge", "config", "check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[local]\nqueue = 2\n")
    r = subprocess.run([sys.executable, "-m", "edge", "config", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "local.queue: unknown key" in r.stderr


def test_config_schema_prints_every_option_and_parses_back(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge", "config", "schema"], capture_output=True, text=True, check=True)
    assert "[server]" in r.stdout and "queue_size = 8" in r.stdout and "# Requests that may wait" in r.stdout
    # The printed defaults are themselves a valid config equal to zero-config.
    assert load_settings(write(tmp_path, r.stdout), environ={}) == Settings()


@pytest.mark.parametrize("text,line", [
    ("[local]\nqueue = 2\n", "local.queue: unknown key; did you mean local.queue_size?"),
    ("[sever]\nlisten = '127.0.0.1:0'\n", "sever: unknown key; did you mean server?"),
    ("queue_size = 2\n", "queue_size: unknown key; did you mean local.queue_size?"),   # a key in the wrong table
    ("[[local.models]]\nname = 'a'\nchat_fromat = ''\n",
     "local.models.0.chat_fromat: unknown key; did you mean local.models.0.chat_format?"),
    ("[local]\nzzz = 1\n", "local.zzz: unknown key"),   # nothing near: no guess
])
def test_unknown_key_suggests_the_nearest_one(tmp_path: Path, text: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    assert line in str(info.value).split("\n  "), str(info.value)


@pytest.mark.parametrize("text,environ,line", [
    ("[routing]\ndifficulty_threshold = 1.5\n", {}, "routing.difficulty_threshold: 1.5 should be less than or equal to 1"),
    ("[local]\nqueue_size = -1\n", {}, "local.queue_size: -1 should be greater than or equal to 0"),
    ("log_level = 'loud'\n", {}, "log_level: \"loud\" should be 'debug', 'info', 'warning' or 'error'"),
    ("[server]\nlisten = 'nohostport'\n", {},
     'server.listen: must be host:port with a port from 0 to 65535, e.g. 127.0.0.1:50051 (got "nohostport")'),
    ("[metrics]\ntls_cert_file = 'c.pem'\n", {}, "metrics: tls_cert_file and tls_key_file go together: set both or neither"),
    ("[[cloud]]\nname = 'c'\n", {}, "cloud.0.model: required, not set"),
    ("", {"EDGE_THREADS": "lots"},
     'local.n_threads: EDGE_THREADS="lots" should be a valid integer, unable to parse string as an integer'),
])
def test_errors_show_the_bad_value_and_no_pydantic_wording(tmp_path: Path, text: str, environ: dict[str, str],
                                                           line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ=environ)
    message = str(info.value)
    assert line in message.split("\n  "), message
    assert "Value error" not in message and "Input should" not in message and "Field required" not in message


def test_unknown_default_model_names_the_key_that_was_set_and_the_known_models(tmp_path: Path) -> None:
    from edge.catalog import load_manifest

    shipped = load_manifest().default
    path = write(tmp_path, "[local]\ndefault_model = 'nope'\n[[local.models]]\nname = 'mine'\nbackend = 'fake'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    line = str(info.value).split("\n  ")[1]
    assert line.startswith('local.default_model: "nope" is not a known model; known models: mine, '), line
    assert shipped in line
    # From the environment: the variable is named, whatever the file says.
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[local]\ndefault_model = 'mine'\n[[local.models]]\nname = 'mine'\n"),
                      environ={"EDGE_DEFAULT_MODEL": "nope"})
    assert 'local.default_model: EDGE_DEFAULT_MODEL="nope" is not a known model' in str(info.value)
    # A manifest model, or a [[local.models]] entry, is a known name.
    assert load_settings(environ={"EDGE_DEFAULT_MODEL": shipped}).local.default_model == shipped
    assert load_settings(path, environ={"EDGE_DEFAULT_MODEL": "mine"}).local.default_model == "mine"


def test_serve_with_an_unknown_default_model_blames_the_variable(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge", "serve", "--listen", "127.0.0.1:0"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "EDGE_DEFAULT_MODEL": "nope",
                                                   "EDGE_LEDGER": str(tmp_path / "ledger.sqlite3")})
    assert r.returncode == 2
    assert 'EDGE_DEFAULT_MODEL="nope" is not a known model; known models: ' in r.stderr, r.stderr
    assert "local.models:" not in r.stderr
