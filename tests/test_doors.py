"""What an outside probe got through, each held shut: floods, hostile formats, shared
tenants, files other users could read or write (issue: "Hold the doors")."""

from __future__ import annotations

import resource
import socket
import time

import grpc
import httpx

from edge.client import Client

from .conftest import SERVING, fake_config, health_status, start_daemon, wait_until


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
