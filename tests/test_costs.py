"""Cost, budgets and the ledger, end to end: a priced loopback cloud tier, the real ledger file."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import sys

import grpc
import pytest

from edge.testing.providers import ProviderServer
from edge.v1 import router_pb2 as pb

from .conftest import fake_config, start_daemon

REPLY = "one two three four five six seven eight"
IN_PRICE, OUT_PRICE = 1000.0, 2000.0  # USD per million tokens: big enough to see


def cost_config(srv: ProviderServer, cost: str = "") -> str:
    return fake_config(reply="local answer") + f"""
[routing]
strategy = "chain"

[cost]
local_watts = 10
usd_per_kwh = 0.5
{cost}

[[cost.prices]]
provider = "openai"
model = "test-model"
input_per_mtok = {IN_PRICE}
output_per_mtok = {OUT_PRICE}

[[cloud]]
name = "cloud"
base_url = "{srv.base_url}"
model = "test-model"
first_byte_timeout_s = 2
"""


@pytest.fixture
def cloud(loopback) -> ProviderServer:
    return loopback(reply=REPLY)


def usage(ledger_path) -> dict:
    out = subprocess.run([sys.executable, "-m", "edge", "usage", "--json", "--days", "1"], capture_output=True,
                         text=True, env={"EDGE_LEDGER": str(ledger_path), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[-1]


def test_cloud_answer_is_priced_and_recorded(daemon_factory, cloud, tmp_path):
    d = daemon_factory(cost_config(cloud))
    r = d.client().ask("hello there", timeout=10)
    assert r.served_by.backend == "cloud"
    expected = (r.usage.prompt_tokens * IN_PRICE + r.usage.completion_tokens * OUT_PRICE) / 1e6
    assert r.cost_usd == pytest.approx(expected)
    local = d.client().ask("x", preference="local_only", timeout=10)
    assert 0 < local.cost_usd < 0.001  # energy for a few milliseconds
    with pytest.raises(grpc.RpcError):
        d.client().ask("x", temperature=7, timeout=10)
    d.stop()  # flushes the ledger
    day = usage(tmp_path / "d0.ledger.sqlite3")
    assert day["requests"] == 3 and day["by_tier"]["cloud"] == 1 and day["by_tier"]["local"] == 1
    assert day["failed"] == 1
    assert day["cost_usd"] == pytest.approx(r.cost_usd + local.cost_usd)


def test_daily_budget_holds_across_a_kill_9(cloud, tmp_path):
    # Each cloud answer costs about 2000*8/1e6 + 1000*2/1e6 = 0.018 USD; allow two.
    cfg = cost_config(cloud, cost="daily_budget_usd = 0.045")
    d = start_daemon(tmp_path, cfg, name="budget")
    try:
        served = [d.client().ask("hi", max_tokens=8, timeout=10) for _ in range(4)]
    finally:
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
    assert [r.served_by.backend for r in served] == ["cloud", "cloud", "local", "local"]
    codes = [x.code for x in served[2].trace]
    assert "COST_OVER_BUDGET" in codes and served[2].degraded
    assert [(a.backend, a.outcome) for a in served[2].attempts][0] == ("cloud", "over_budget")
    assert "daily" in served[2].attempts[0].detail
    cloud_requests = len(cloud.requests)
    # Restarted on the same ledger after kill -9: the spending is still there.
    d2 = start_daemon(tmp_path, cfg, name="budget")
    try:
        r = d2.client().ask("hi", max_tokens=8, timeout=10)
        assert r.served_by.backend == "local" and r.attempts[0].outcome == "over_budget"
        assert len(cloud.requests) == cloud_requests
    finally:
        d2.stop()


def test_per_request_cost_ceiling(daemon_factory, cloud):
    d = daemon_factory(cost_config(cloud))
    r = d.client().ask("hi", max_tokens=8, max_cost_usd=0.0001, timeout=10)
    assert r.served_by.tier == pb.TIER_LOCAL and r.attempts[0].outcome == "over_cost_ceiling"
    assert "COST_OVER_COST_CEILING" in [x.code for x in r.trace]
    with pytest.raises(grpc.RpcError) as info:
        d.client().ask("hi", max_tokens=8, max_cost_usd=0.0001, preference="cloud_only", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "over_cost_ceiling" in info.value.details()
    assert cloud.requests == []
    assert d.client().ask("hi", max_tokens=8, max_cost_usd=1.0, timeout=10).served_by.backend == "cloud"


def test_kill_9_under_load_loses_no_spending_a_client_was_served(tmp_path):
    """Four clients stream from a priced cloud tier; the daemon is killed with SIGKILL while
    requests are in flight. Every answer a client received is in the ledger afterwards, the
    file passes SQLite's integrity check, and the restarted daemon's budget counts it all."""
    import sqlite3
    import threading

    from edge.ledger import Ledger

    slow = ProviderServer("openai", reply=REPLY, token_delay_s=0.01).start()
    try:
        cfg = cost_config(slow, cost="daily_budget_usd = 1000")
        d = start_daemon(tmp_path, cfg, name="load")
        served: list[pb.GenerateResponse] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client_loop(n: int) -> None:
            c = d.client()
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    final = [m.final for m in c.stream("hi", max_tokens=8, request_id=f"c{n}-{i}", timeout=10)
                             if m.HasField("final")]
                except grpc.RpcError:
                    return  # the daemon died under us: expected from here on
                with lock:
                    served.extend(final)

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(served) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        d.proc.send_signal(signal.SIGKILL)  # mid-traffic: other requests are in flight
        d.proc.wait(30)
        stop.set()
        for t in threads:
            t.join(30)
        assert len(served) >= 20

        ledger_path = tmp_path / "load.ledger.sqlite3"
        with sqlite3.connect(ledger_path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with Ledger(ledger_path) as ledger:
            rows = {e.request_id: e for e in ledger.entries()}
        for r in served:
            assert r.request_id in rows, f"{r.request_id} was answered but is not in the ledger"
            assert rows[r.request_id].cost_usd == pytest.approx(r.cost_usd)
        spent = sum(e.cost_usd for e in rows.values())
        assert spent >= sum(r.cost_usd for r in served) > 0

        d2 = start_daemon(tmp_path, cfg, name="load")
        try:
            day = {b.period: b for b in d2.client().status(timeout=5).budgets}["day"]
            assert day.spent_usd == pytest.approx(spent, rel=1e-9)
            assert d2.client().ask("hi", max_tokens=8, timeout=10).served_by.backend == "cloud"
        finally:
            d2.stop()
    finally:
        slow.stop()
