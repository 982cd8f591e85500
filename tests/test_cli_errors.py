"""What the command line says when the user got something wrong: one line naming the
option (or key, or address) and the limit or the fix; never a traceback or gRPC's raw text."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import build_parser, main
from edge.client import build_request

from .conftest import fake_config


def run_edge(*argv: str, input: str | None = None, env: dict[str, str] | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *argv], capture_output=True, text=True, input=input,
                          timeout=timeout, env={**os.environ, **(env or {})})


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- numbers out of range ---------------------------------------------------------------------

def test_ask_max_tokens_out_of_the_wire_range_is_one_line_not_a_traceback() -> None:
    r = run_edge("ask", "--target", f"127.0.0.1:{free_port()}", "--max-tokens", "99999999999", "hi")
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == "edge: --max-tokens: must be between 0 and 2147483647, got 99999999999"


@pytest.mark.parametrize("argv,start,limit", [
    (["ask", "--max-tokens", "-1", "x"], "edge: --max-tokens:", "between 0 and 2147483647"),
    (["ask", "--max-tokens", "many", "x"], "edge: --max-tokens:", "an integer between 0 and 2147483647"),
    (["ask", "--temperature", "nan", "x"], "edge: --temperature:", "a finite number"),
    (["ask", "--temperature", "1e40", "x"], "edge: --temperature:", "a finite number"),   # inf as a float32
    (["ask", "--top-p", "inf", "x"], "edge: --top-p:", "a finite number"),
    (["ask", "--top-p", "half", "x"], "edge: --top-p:", "a number"),
    (["ask", "--seed", str(2**64), "x"], "edge: --seed:", f"between {-(2**63)} and {2**63 - 1}"),
    (["ask", "--timeout", "0", "x"], "edge: --timeout:", "more than 0 and at most 86400 seconds"),
    (["ask", "--timeout", "inf", "x"], "edge: --timeout:", "more than 0 and at most 86400 seconds"),
    (["status", "--timeout", "-3"], "edge: --timeout:", "more than 0 and at most 86400 seconds"),
    (["usage", "--days", "0"], "edge: --days:", "between 1 and 36500"),
])
def test_numeric_options_name_the_option_and_its_limit(argv: list[str], start: str, limit: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(start) and limit in line and argv[-2 if argv[-1] == "x" else -1] in line, line


def test_other_command_line_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ask"])
    assert info.value.code == 2
    assert one_line(capsys.readouterr().err) == \
        "edge: the following arguments are required: prompt (see edge ask --help)"


def test_unreadable_token_file_and_half_a_tls_pair_are_input_errors(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "token"
    assert main(["ask", "--token-file", str(missing), "hi"]) == 2
    assert one_line(capsys.readouterr().err) == f"edge: --token-file: cannot read {missing}: No such file or directory"
    assert main(["status", "--cert", str(tmp_path / "c.pem")]) == 2
    assert "--cert and --key go together" in one_line(capsys.readouterr().err)
    assert main(["status", "--ca", str(tmp_path / "ca.pem")]) == 2
    assert one_line(capsys.readouterr().err).startswith("edge: --ca: cannot read ")


def test_build_request_names_the_field_a_number_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"^max_tokens must be between -2147483648 and 2147483647, got 99999999999$"):
        build_request("hi", max_tokens=99_999_999_999)
    with pytest.raises(ValueError, match=r"^seed must be between"):
        build_request("hi", seed=2**63)
    with pytest.raises(ValueError, match=r"^max_latency_ms must be between 0 and 4294967295"):
        build_request("hi", max_latency_ms=-1)


def test_a_bad_environment_is_reported_not_raised_by_commands_that_read_the_config(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDGE_DEFAULT_MODEL", "nope")
    assert main(["models", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge: invalid config (defaults and EDGE_* environment variables):\n"), err
    assert 'local.default_model: EDGE_DEFAULT_MODEL="nope" is not a known model; known models: ' in err


# -- no daemon ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["status"], ["ask", "hi"]])
def test_no_daemon_says_which_address_and_how_to_start_one(command: list[str]) -> None:
    target = f"127.0.0.1:{free_port()}"
    r = run_edge(*command, "--target", target, "--timeout", "5")
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert line.startswith(f"edge: no daemon at {target}: connection refused;") and "`edge serve`" in line, line
    assert "failed to connect" not in line


def test_no_daemon_on_a_unix_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "edge.sock"
    assert main(["status", "--target", f"unix:{sock}", "--timeout", "5"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"edge: no daemon at unix:{sock}: no such file or directory;") and "edge serve" in line


def test_default_target_is_named_as_the_default(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may listen on the default port here; skip rather than guess when something does.
    monkeypatch.delenv("EDGE_TARGET", raising=False)
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 50051)) == 0:
            pytest.skip("something listens on 127.0.0.1:50051")
    assert main(["status", "--timeout", "5"]) == 1
    assert "no daemon at 127.0.0.1:50051 (the default address)" in one_line(capsys.readouterr().err)


# -- serve on a busy port ----------------------------------------------------------------------

def test_serve_on_a_busy_port_says_address_in_use_and_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text(fake_config(), encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        r = run_edge("serve", "--config", str(cfg), "--listen", listen, env={"EDGE_LEDGER": str(tmp_path / "l.db")})
    assert r.returncode == 1
    line = one_line(r.stderr)   # no gRPC log line, no GRPC_VERBOSITY advice
    assert f"address already in use: {listen}" in line and "--listen HOST:PORT" in line and "port 0" in line, line
    assert "GRPC_VERBOSITY" not in line


# -- help and wording -----------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser, path: str = "edge"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subcommands here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{path} {name}")


def test_every_option_and_argument_has_help() -> None:
    missing = []
    for path, parser in _subparsers(build_parser()):
        if path.startswith(("edge profile", "edge router")):  # own parsers elsewhere (edge.profiler, edge.router_cli)
            continue
        for action in parser._actions:  # noqa: SLF001
            if not isinstance(action, argparse._SubParsersAction) and not action.help:  # noqa: SLF001
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_profile_help_is_named_edge_profile() -> None:
    r = run_edge("profile", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: edge profile "), r.stdout
    assert "python -m edge.profiler" not in r.stdout


def test_serve_help_shows_the_default_address_and_the_environment() -> None:
    from edge.config import ENV_OVERRIDES

    r = run_edge("serve", "--help")
    assert r.returncode == 0 and "127.0.0.1:50051" in r.stdout
    for var, (section, key) in ENV_OVERRIDES.items():
        assert var in r.stdout and (f"{section}.{key}" if section else key) in r.stdout, var


def test_ask_against_a_daemon_reads_stdin_for_dash_and_relays_its_limits(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(fake_config())   # the fake backend echoes the last user message
    # `edge ask -`: several lines, both kinds of quote: awkward to pass as one argument.
    prompt = "\n".join(f"line {i}: it's \"quoted\" and $HOME stays as written" for i in range(40))
    r = run_edge("ask", "--target", d.target, "--max-tokens", "1000", "-", input=prompt)
    assert r.returncode == 0, r.stderr
    assert r.stdout == prompt + "\n"
    # Ranges that are the daemon's policy come back from it as one line naming field and limit.
    for option, value, line in [
        ("--temperature", "5", "edge: INVALID_ARGUMENT: params.temperature: must be between 0 and 2, got 5.0"),
        ("--seed", "-1", "edge: INVALID_ARGUMENT: params.seed: must be between 0 and 4294967295, got -1"),
        ("--max-tokens", "5000", "edge: INVALID_ARGUMENT: params.max_tokens: 5000 is over the limit of 2048"),
    ]:
        r = run_edge("ask", "--target", d.target, option, value, "hi")
        assert r.returncode == 1 and one_line(r.stderr) == line, r.stderr


def test_error_messages_quote_a_model_name_once():
    """A name shown with repr() then "'s" read `model 'x''s context`."""
    import asyncio

    from edge.backends.base import GenerationRequest, Message, SamplingParams
    from edge.backends.fake import FakeBackend
    from edge.errors import InvalidArgument

    backend = FakeBackend("tiny", n_ctx=8)

    async def ask() -> None:
        await backend.start()
        try:
            [c async for c in backend.generate(GenerationRequest(
                messages=(Message("user", "word " * 20),), params=SamplingParams(max_tokens=4)))]
        finally:
            await backend.close()

    with pytest.raises(InvalidArgument) as info:
        asyncio.run(ask())
    assert "''" not in str(info.value) and "context of 8 tokens of model 'tiny'" in str(info.value)
