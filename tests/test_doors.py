"""What an outside probe got through, each held shut: floods, hostile formats, shared
tenants, files other users could read or write (issue: "Hold the doors")."""

from __future__ import annotations

import resource
import socket
import struct

import grpc
import httpx
import pytest

from edge.client import Client

from .conftest import SERVING, TOKEN_A, TOKEN_B, fake_config, health_status, start_daemon, wait_until, write_private


def _raise_own_file_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def test_a_flood_of_half_open_http_connections_leaves_every_other_door_answering(tmp_path):
    """1,100 connections that never finish their headers, against a daemon allowed 1,024
    open files (systemd's default): gRPC over TCP, the unix socket and metrics keep
    answering, the flood is closed after the header timeout, the log stays small, and
    HTTP serves again."""
    _raise_own_file_limit(4096)
    sock_path = tmp_path / "edge.sock"
    d = start_daemon(tmp_path, fake_config(reply="still here", server_extra=f'unix_socket = "{sock_path}"') + """
[http]
listen = "127.0.0.1:0"
header_timeout_s = 2

[metrics]
listen = "127.0.0.1:0"
""", open_files=1024)
    host, port = d.addresses["http"].rsplit(":", 1)
    flood = []
    try:
        for _ in range(1100):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: edge\r\n")  # and never the rest
            flood.append(s)
        assert health_status(d.target) == SERVING
        with grpc.insecure_channel(f"unix:{sock_path}") as ch:
            assert Client(channel=ch).ask("hi", timeout=10).text == "still here"
        assert d.client().ask("hi", timeout=10).text == "still here"
        assert httpx.get(f"http://{d.addresses['metrics']}/metrics", timeout=5).status_code == 200

        def closed_by_the_server(s: socket.socket) -> bool:
            s.settimeout(0.01)
            try:
                return s.recv(1) == b""
            except TimeoutError:
                return False
            except OSError:
                return True  # reset: refused at accept

        wait_until(lambda: all(closed_by_the_server(s) for s in flood), timeout=30, interval=0.5)
    finally:
        for s in flood:
            s.close()
    r = httpx.post(f"http://{d.addresses['http']}/v1/chat/completions", timeout=10,
                   json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "still here"
    d.stop()
    log = d.logs()
    assert len(log) < 100_000, f"log grew to {len(log)} bytes"
    assert "HTTP connections refused" in log


# -- files other users could read or write --------------------------------------------------------

def test_ledger_and_answer_cache_are_private_whatever_the_umask(tmp_path, monkeypatch):
    import os
    import stat

    from edge.answer_cache import AnswerCache
    from edge.ledger import Ledger, LedgerEntry

    state = tmp_path / "state"
    monkeypatch.setenv("EDGE_LEDGER", str(state / "ledger.sqlite3"))  # edge's own directory: made 0700
    old = os.umask(0o002)  # a permissive umask, as on many desktops
    try:
        with Ledger(state / "ledger.sqlite3") as ledger:
            ledger.record(LedgerEntry(request_id="r", ts=1.0, tier="local", backend="local", model="m",
                                      prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_ms=1.0, outcome="ok"))
            cache = AnswerCache(state / "answers.sqlite3", ttl_s=60, max_entries=10, threshold=0.9)
            cache.close()
            files = sorted(p for p in state.iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert {"ledger.sqlite3", "ledger.sqlite3-wal", "answers.sqlite3"} <= set(modes)
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_a_ledger_made_by_an_older_version_is_tightened(tmp_path):
    import stat

    from edge.ledger import Ledger

    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    path.chmod(0o644)
    Ledger(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode,why", [(0o602, "writable by every user"), (0o622, "writable by every user"),
                                      (0o620, "writable by its group"), (0o644, "readable by every user")])
def test_a_tokens_file_others_can_write_or_read_is_refused(tmp_path, mode, why):
    from edge.errors import ConfigError
    from edge.private_files import check_secret_file as check_private_file

    f = write_private(tmp_path / "tokens", f"kiosk {TOKEN_A}\n", mode=mode)
    with pytest.raises(ConfigError, match=rf"security.tokens_file: .*{why} \(mode 0{mode:o}\).*chmod 600"):
        check_private_file(str(f), "security.tokens_file")


@pytest.mark.parametrize("lines,why", [
    (f"kiosk {TOKEN_A}\npanel {TOKEN_A}\n", "the same token as client 'kiosk'"),
    (f"kiosk {TOKEN_A}\nkiosk {TOKEN_B}\n", "client name 'kiosk' is used twice"),
    (f"client-2 {TOKEN_A}\n{TOKEN_B}\n", "client name 'client-2' is used twice"),
])
def test_tokens_that_would_make_two_clients_one_tenant_are_refused(tmp_path, lines, why):
    from edge.errors import ConfigError
    from edge.security import TokenStore

    f = write_private(tmp_path / "tokens", lines)
    with pytest.raises(ConfigError, match=why):
        TokenStore(str(f))


def test_one_rate_limit_bucket_per_client_across_every_door(tmp_path):
    """Without tokens a client on this device is one client, whether it calls over TCP, the
    unix socket or HTTP: the burst is shared, not granted once per door."""
    sock = tmp_path / "edge.sock"
    d = start_daemon(tmp_path, fake_config(reply="ok", server_extra=f'unix_socket = "{sock}"') + """
[http]
listen = "127.0.0.1:0"

[security]
rate_limit_per_s = 0.01
rate_limit_burst = 2
""")
    try:
        assert d.client().ask("hi", timeout=10).text == "ok"
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            assert Client(channel=ch).ask("hi", timeout=10).text == "ok"
        r = httpx.post(f"http://{d.addresses['http']}/v1/chat/completions", timeout=10,
                       json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 429 and "rate limit" in r.json()["error"]["message"]
    finally:
        d.stop()
    assert '"reason": "rate_limited"' in d.logs() and '"client": "local"' in d.logs()


# -- idle streams and log floods --------------------------------------------------------------------

def test_health_list_answers_and_no_client_call_logs_a_traceback(tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    d = start_daemon(tmp_path, fake_config(reply="ok"))
    try:
        with grpc.insecure_channel(d.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for _ in range(20):
                statuses = stub.List(health_pb2.HealthListRequest(), timeout=5).statuses
            assert statuses[""].status == SERVING and statuses["edge.v1.EdgeRouter"].status == SERVING
    finally:
        d.stop()
    assert "Traceback" not in d.logs()


def test_abandoned_streams_cannot_pile_up_past_the_concurrency_limit(tmp_path):
    """Health watches nobody reads hold a call each; past server.max_concurrent_rpcs a new
    call is refused at once (RESOURCE_EXHAUSTED), and once they go the daemon serves again."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    d = start_daemon(tmp_path, fake_config(reply="ok", server_extra="max_concurrent_rpcs = 20"))
    try:
        with grpc.insecure_channel(d.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(20)]
            for w in watches:
                next(w)  # each is open and holds its call
            with pytest.raises(grpc.RpcError) as refused:
                Client(channel=ch).ask("hi", timeout=10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for w in watches:
                w.cancel()
            assert wait_until(lambda: _answers(ch), timeout=10)
    finally:
        d.stop()


def _answers(ch: grpc.Channel) -> bool:
    try:
        return Client(channel=ch).ask("hi", timeout=5).text == "ok"
    except grpc.RpcError:
        return False


# -- files written where they must not be -------------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside/pwned", "/tmp/pwned", "..", ".hidden", "a b", "a\nb"])
def test_a_model_name_cannot_write_outside_the_models_directory(tmp_path, name):
    from edge.catalog import install_from
    from edge.errors import ConfigError

    custom = tmp_path / "custom.gguf"
    custom.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + b"\x01" * 100)  # a whole, empty GGUF
    models = tmp_path / "models"
    with pytest.raises(ConfigError, match="--name"):
        install_from(custom, models, name=name)
    assert not (tmp_path / "outside").exists() and not list(tmp_path.glob("*pwned*"))


def test_a_link_planted_where_the_receipt_is_written_is_not_followed(tmp_path):
    from edge.catalog import install_from

    custom = tmp_path / "custom.gguf"
    custom.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + b"\x01" * 100)  # a whole, empty GGUF
    models = tmp_path / "models"
    models.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    for planted in ("custom.json.tmp", ".custom.json.tmp"):  # the old and any predictable temp name
        (models / planted).symlink_to(victim)
    name, _ = install_from(custom, models, name="custom")
    assert victim.read_text() == "untouched" and (models / "custom.json").is_file()
    assert not (models / "custom.json").is_symlink()


def test_credentials_in_a_backend_url_never_reach_the_log(tmp_path, loopback):
    cloud = loopback(reply="remote answer")
    host = cloud.base_url.split("://", 1)[1]
    d = start_daemon(tmp_path, fake_config(reply="local") + f"""
[routing]
strategy = "chain"

[[onprem]]
name = "lan"
base_url = "http://operator:hunter2-secret@{host}"
model = "m"
""")
    try:
        assert d.client().ask("hi", timeout=10).text == "remote answer"
    finally:
        d.stop()
    assert "hunter2-secret" not in d.logs() and '"backend": "lan"' in d.logs()
