"""The fleet link against a real NATS server (nats-server from the venv's bin, JetStream
on a free loopback port, in a temp dir): the box joins, says it is there, keeps serving
when the server is away and rejoins when it is back; a refused login is a status line."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from edge.testing.nats_server import NatsServer, free_port

from .conftest import Core, core_settings, fake_config

@pytest.fixture
def nats_server(tmp_path):  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path).start()
    yield server
    server.stop()


def fleet_toml(url: str, box: str = "kiosk-1", extra: str = "", head: str = "") -> str:
    """A fake local model and `head` (routing, prices, remotes...), in a fleet."""
    return fake_config(reply="local answer") + head + f"""
[fleet]
servers = ["{url}"]
name = "shop"
box = "{box}"
heartbeat_s = 0.5
connect_timeout_s = 0.5
{extra}
"""


async def wait_for(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def heartbeat(url: str, box: str) -> dict:
    import nats

    nc = await nats.connect(url, connect_timeout=1)
    try:
        kv = await nc.jetstream().key_value("shop_boxes")
        return json.loads((await kv.get(box)).value)
    finally:
        await nc.close()


def test_a_box_joins_its_fleet_and_says_it_is_there(tmp_path, nats_server):
    async def scenario() -> None:
        async with Core(core_settings(tmp_path, fleet_toml(nats_server.url)), {}) as core:
            await wait_for(lambda: core.status().fleet.heartbeats_sent >= 1)
            f = core.status().fleet
            assert f.connected and f.box == "kiosk-1" and f.fleet == "shop" and f.server.endswith(
                str(nats_server.port))
            beat = await heartbeat(nats_server.url, "kiosk-1")
            assert beat["box"] == "kiosk-1" and beat["model"] == "fake" and beat["version"]
            r, _ = await core.ask()
            assert r.text == "local answer"

    asyncio.run(scenario())


def test_the_box_serves_while_the_fleet_is_away_and_rejoins_when_it_is_back(tmp_path):
    port = free_port()
    server = NatsServer(tmp_path, port)

    async def scenario() -> None:
        # No server at start: the daemon starts and serves all the same.
        async with Core(core_settings(tmp_path, fleet_toml(f"nats://127.0.0.1:{port}")), {}) as core:
            r, _ = await core.ask()
            assert r.text == "local answer"
            await wait_for(lambda: bool(core.status().fleet.last_error))
            f = core.status().fleet
            assert not f.connected and "no fleet server reachable" in f.last_error
            server.start()
            await wait_for(lambda: core.status().fleet.connected, timeout=20)
            await wait_for(lambda: core.status().fleet.heartbeats_sent >= 1)
            server.stop()  # the fleet goes away while the box runs
            await wait_for(lambda: not core.status().fleet.connected, timeout=20)
            t0 = time.monotonic()
            r, _ = await core.ask()
            assert r.text == "local answer" and time.monotonic() - t0 < 5  # nothing waits for the fleet
            server.start()
            await wait_for(lambda: core.status().fleet.connected, timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_refused_credentials_are_a_status_line_and_the_box_still_serves(tmp_path):
    server = NatsServer(tmp_path, None, "--user", "edge", "--pass", "right").start()

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, fleet_toml(f"nats://edge:wrong@127.0.0.1:{server.port}")),
                        {}) as core:
            # The server may reset the connection before the client reads its refusal: the
            # link retries, and says what it was told.
            await wait_for(lambda: "authorization refused" in core.status().fleet.last_error, timeout=15)
            f = core.status().fleet
            assert not f.connected and "creds_file" in f.last_error
            assert "wrong" not in f.last_error  # a password in a server URL is never shown
            r, _ = await core.ask()
            assert r.text == "local answer"

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


# -- the fleet's budget, shared through leases -------------------------------------------------------

PRICES = """
[cost]
[[cost.prices]]
provider = "openai"
model = "test-model"
input_per_mtok = 1.0
output_per_mtok = 100.0
"""  # 10 answer tokens cost $0.001: the budget binds after a handful of answers


def budget_toml(url: str, box: str, budget: float, lease: float) -> str:
    from .conftest import remote_entries

    return fleet_toml(url, box, extra=f"daily_budget_usd = {budget}\nlease_usd = {lease}\n",
                      head='[routing]\nstrategy = "chain"\n' + PRICES) + remote_entries(("cloud", "cloud", "openai"))


def remote_cost(results) -> float:  # type: ignore[no-untyped-def]
    return sum(r.cost_usd for r in results if r.backend == "cloud")


def test_three_boxes_under_load_never_spend_more_than_the_fleet_budget(tmp_path, nats_server):
    from edge.testing.transport import ProviderTransport

    budget, lease = 0.01, 0.003

    async def box(name: str) -> list:
        path = tmp_path / name
        path.mkdir()
        p = {"cloud": ProviderTransport("openai", reply="one two three four five six seven eight nine ten")}
        async with Core(core_settings(path, budget_toml(nats_server.url, name, budget, lease)), p) as core:
            await wait_for(lambda: core.status().fleet.connected)
            results = []
            for _ in range(25):  # closed loop, three boxes at once
                results += [r for r, _ in await asyncio.gather(*(core.ask(max_tokens=10) for _ in range(3)))]
                await asyncio.sleep(0.05)
            await wait_for(lambda: core.status().fleet.pending == 0)
            return results

    async def scenario() -> None:
        per_box = await asyncio.gather(box("a"), box("b"), box("c"))
        spent = sum(remote_cost(rs) for rs in per_box)
        served_remote = sum(1 for rs in per_box for r in rs if r.backend == "cloud")
        assert served_remote >= 5  # the budget was used...
        assert spent <= budget + 1e-9  # ...and never overspent: each box spent only from its lease
        assert all(r.text for rs in per_box for r in rs)  # past the budget, the local model answered
        over = [r for rs in per_box for r in rs if r.backend != "cloud"]
        assert any(a.outcome == "over_budget" and "lease" in a.detail or "spent" in a.detail
                   for r in over for a in r.attempts)

    asyncio.run(scenario())


def test_a_box_cut_off_spends_at_most_its_lease_and_reconciles_when_the_fleet_is_back(tmp_path):
    import nats

    from edge.testing.transport import ProviderTransport

    server = NatsServer(tmp_path).start()
    budget, lease = 0.01, 0.003
    p = {"cloud": ProviderTransport("openai", reply="one two three four five six seven eight nine ten")}

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, budget_toml(server.url, "kiosk", budget, lease)), p) as core:
            await wait_for(lambda: core.status().fleet.connected)
            first, _ = await core.ask(max_tokens=10)  # wakes the lease; local while it is taken
            await asyncio.sleep(0.5)
            server.stop()
            await wait_for(lambda: not core.status().fleet.connected, timeout=20)
            cut_off = [(await core.ask(max_tokens=10))[0] for _ in range(10)]
            spent = remote_cost([first, *cut_off])
            assert 0 < spent <= lease + 1e-9  # spent from the lease it held, and no more
            assert cut_off[-1].backend == "local" and core.status().fleet.pending >= 1
            server.start()
            await wait_for(lambda: core.status().fleet.connected and core.status().fleet.pending == 0, timeout=30)
            nc = await nats.connect(server.url)
            try:
                info = await nc.jetstream().stream_info("shop_spend")
                assert info.state.messages == sum(1 for r in [first, *cut_off] if r.backend == "cloud")
            finally:
                await nc.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
