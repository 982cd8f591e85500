"""The fleet link against a real NATS server (nats-server from the venv's bin, JetStream
on a free loopback port, in a temp dir): the box joins, says it is there, keeps serving
when the server is away and rejoins when it is back; a refused login is a status line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
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


# -- the shared answer cache -----------------------------------------------------------------------

CACHE = '[routing]\nstrategy = "chain"\n[cache]\nenabled = true\nsemantic = false\n'


async def stream_messages(url: str, stream: str) -> list[bytes]:
    """Every message the stream holds, oldest first."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url, connect_timeout=1)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(stream)).state.messages
        sub = await js.pull_subscribe(">", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        out: list[bytes] = []
        while len(out) < total:
            out += [m.data for m in await sub.fetch(256, timeout=2)]
        return out
    finally:
        await nc.close()


def test_an_answer_one_box_stored_is_a_hit_on_another_but_a_local_only_one_never_leaves(tmp_path, nats_server):
    from edge.testing.transport import ProviderTransport
    from edge.types import Preference

    def toml(box: str) -> str:
        from .conftest import remote_entries

        return fleet_toml(nats_server.url, box, head=CACHE) + remote_entries(("cloud", "cloud", "openai"))

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    pa = {"cloud": ProviderTransport("openai", reply="Water boils at 100 degrees Celsius at sea level.")}
    pb = {"cloud": ProviderTransport("openai", reply="box b's provider")}
    secret = "My badge number is 4471; which door is mine?"

    async def scenario() -> None:
        async with Core(core_settings(tmp_path / "a", toml("a")), pa) as a, \
                Core(core_settings(tmp_path / "b", toml("b")), pb) as b:
            await wait_for(lambda: a.status().fleet.connected and b.status().fleet.connected)
            first, _ = await a.ask("At what temperature does water boil?")
            kept, _ = await a.ask(secret, preference=Preference.LOCAL_ONLY)
            assert first.backend == "cloud" and kept.backend == "local"
            await wait_for(lambda: b.status().fleet.cache_received >= 1)
            hit, _ = await b.ask("At  what temperature does water boil?")  # exact after whitespace
            assert hit.backend == "cache" and hit.text == first.text and hit.cache.original.backend == "cloud"
            assert pb["cloud"].requests == []  # b's provider was never asked
            assert b.status().models[0].requests_total == 0  # nor its local model
            mine, _ = await b.ask(secret, preference=Preference.LOCAL_ONLY)
            assert mine.backend == "local"  # a's local-only answer is not in b's cache
            assert a.status().fleet.cache_shared == 1
            for data in await stream_messages(nats_server.url, "shop_cache_new") + await stream_messages(
                    nats_server.url, "KV_shop_cache"):
                assert b"badge" not in data and b"4471" not in data  # it never left box a
            # A box that joins later finds the fleet's entries in the bucket.
            (tmp_path / "c").mkdir()
            async with Core(core_settings(tmp_path / "c", toml("c")), pb) as c:
                await wait_for(lambda: c.status().fleet.cache_received >= 1)
                late, _ = await c.ask("At what temperature does water boil?")
                assert late.backend == "cache" and pb["cloud"].requests == []

    asyncio.run(scenario())


def test_a_shared_answer_expires_fleet_wide_when_it_does_where_it_was_made(tmp_path, nats_server):
    from edge.testing.transport import ProviderTransport

    from .conftest import remote_entries

    def toml(box: str, ttl: float) -> str:
        return fleet_toml(nats_server.url, box, head=CACHE + f"ttl_s = {ttl}\n") + remote_entries(
            ("cloud", "cloud", "openai"))

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    pa, pb = ({"cloud": ProviderTransport("openai", reply=f"from {x}")} for x in "ab")

    async def scenario() -> None:
        async with Core(core_settings(tmp_path / "a", toml("a", 1.5)), pa) as a, \
                Core(core_settings(tmp_path / "b", toml("b", 3600)), pb) as b:
            await wait_for(lambda: a.status().fleet.connected and b.status().fleet.connected)
            await a.ask("Which way is north?")
            await wait_for(lambda: b.status().fleet.cache_received >= 1)
            hit, _ = await b.ask("Which way is north?")
            assert hit.backend == "cache" and hit.text == "from a"
            await asyncio.sleep(1.6)  # past a's TTL (b's own would keep it an hour)
            again, _ = await b.ask("Which way is north?")
            assert again.backend == "cloud" and again.text == "from b"

    asyncio.run(scenario())


def cloud_boxes(tmp_path, url: str, names: tuple[str, ...], reply: str) -> list:
    """One box per name, each in its own folder, with a $1 fleet budget, $0.01 leases and a cloud tier."""
    from edge.testing.transport import ProviderTransport

    boxes = []
    for name in names:
        (tmp_path / name).mkdir()
        boxes.append(Core(core_settings(tmp_path / name, budget_toml(url, name, 1.0, 0.01)),
                          {"cloud": ProviderTransport("openai", reply=reply)}))
    return boxes


def test_a_server_restart_loses_no_spend_event(tmp_path):
    server = NatsServer(tmp_path).start()
    reply = "one two three four five six seven eight nine ten"

    async def scenario() -> None:
        cores = cloud_boxes(tmp_path, server.url, ("a", "b"), reply)
        async with cores[0] as a, cores[1] as b:
            await wait_for(lambda: a.status().fleet.connected and b.status().fleet.connected)
            await wait_for(lambda: a.status().fleet.lease_usd and b.status().fleet.lease_usd)
            # Request ids of their own: a spend event is deduplicated by its box and request id.
            results = [r for r, _ in await asyncio.gather(*(c.ask(max_tokens=10, request_id=f"up-{i}")
                                                            for c in (a, b) for i in range(3)))]
            server.stop()  # events of answers just given may be on their way, or queued
            await wait_for(lambda: not a.status().fleet.connected and not b.status().fleet.connected, timeout=20)
            results += [r for r, _ in await asyncio.gather(*(c.ask(max_tokens=10, request_id=f"cut-{i}")
                                                             for c in (a, b) for i in range(3)))]
            assert a.status().fleet.pending + b.status().fleet.pending >= 1
            server.start()  # the same port and store
            await wait_for(lambda: all(c.status().fleet.connected and c.status().fleet.pending == 0 for c in (a, b)),
                           timeout=30)
            events = [json.loads(m) for m in await stream_messages(server.url, "shop_spend")]
            ledgers = [c.engine.runtime.ledger.spent_today_usd() for c in (a, b)]
            remote = [r for r in results if r.backend == "cloud"]
            assert len(remote) >= 6 and len(events) == len(remote)
            assert sorted(e["request_id"] for e in events) == sorted(r.request_id for r in remote)
            assert sum(e["cost_usd"] for e in events) == pytest.approx(sum(ledgers), abs=1e-12)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


# -- routing labels pooled without prompts -----------------------------------------------------------

def test_a_fresh_box_routes_by_the_fleets_labels_and_no_prompt_travels(tmp_path, nats_server):
    from edge.calibration.store import CalibrationStore
    from edge.router.load import FixedLoad
    from edge.server import _router
    from edge.testing.transport import ProviderTransport
    from edge.types import Tier

    from .conftest import remote_entries
    from .test_calibration import BackwardsClassifier

    class AllLocal(BackwardsClassifier):
        """Every prompt looks easy (so each is answered locally and shadowed); embeds by family."""

        def score_embedding(self, text, vector, tokens):  # type: ignore[no-untyped-def]
            return 0.1

    def toml(box: str, shadow: float) -> str:
        base = fake_config(reply="It is 4.", shadow_rate=shadow).replace("[calibration]\n",
                                                                          "[calibration]\nmin_labels = 5\n")
        return (base + '[routing]\nstrategy = "smart"\ncascade = false\n' + remote_entries(("cloud", "cloud", "openai"))
                + f'[fleet]\nservers = ["{nats_server.url}"]\nname = "shop"\nbox = "{box}"\nheartbeat_s = 0.5\n')

    # The remote tier says 5 to the "prove" family (the local 4 would not do) and 4 to the rest.
    provider = ProviderTransport("openai", reply=lambda body: "5" if "prove" in json.dumps(body) else "4")
    prompts = [f"Please prove that {n} and {n + 2} are both odd." if n % 2 else f"What is {n} minus {n - 4}?"
               for n in range(1, 13)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()

    async def scenario() -> None:
        async with Core(core_settings(tmp_path / "a", toml("a", 1.0)), {"cloud": provider}, load=FixedLoad(),
                        classifier=AllLocal()) as a:
            await wait_for(lambda: a.status().fleet.connected)
            for p in prompts:
                await a.ask(p)
                await a.engine.close_shadows(wait=True)  # one shadow at a time: each labels its pair
            await wait_for(lambda: a.status().fleet.labels_sent == len(prompts))
        async with Core(core_settings(tmp_path / "b", toml("b", 0.0)), {"cloud": provider}, load=FixedLoad(),
                        classifier=AllLocal()) as b:
            await wait_for(lambda: b.engine.runtime.teacher.fitted is not None)
            fit = _router(b.engine.snapshot())  # what GetStatus (and `edge status`) carries
            assert fit.labels == len(prompts) and b.status().fleet.labels_received == len(prompts)
            hard, _ = await b.ask("Please prove that 21 and 23 are both odd.")
            easy, _ = await b.ask("What is 30 minus 26?")
            # The prior alone would keep both local; the fleet's labels say the first needs the remote tier.
            assert hard.tier == Tier.CLOUD and easy.tier == Tier.LOCAL
            assert "fit on 12 labels" in next(r.detail for r in hard.trace if r.code == "DIFFICULTY_HIGH")
        store = CalibrationStore(tmp_path / "b" / "ledger.calibration.sqlite3")
        try:
            assert {x.source for x in store.labels()} == {"fleet"}  # b labelled none itself
        finally:
            store.close()
        for data in await stream_messages(nats_server.url, "shop_labels"):
            record = json.loads(data)
            assert not {"prompt", "local_text", "remote_text", "text"} & set(record)
            assert b"prove" not in data and b"minus" not in data and not any(p.encode() in data for p in prompts)

    asyncio.run(scenario())



# -- edge fleet status ---------------------------------------------------------------------------------

def edge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("EDGE_")})


def scrape(metrics, snapshot) -> str:  # type: ignore[no-untyped-def]
    """What Prometheus would read from this box's /metrics."""
    from prometheus_client import generate_latest

    metrics.attach(snapshot, lambda: "serving")
    return generate_latest(metrics.registry).decode()


def test_edge_fleet_status_lists_the_running_boxes(tmp_path, nats_server):
    reply = "one two three four five six seven eight nine ten"

    async def scenario() -> None:
        cores = cloud_boxes(tmp_path, nats_server.url, ("kiosk-1", "kiosk-2"), reply)
        async with cores[0] as a, cores[1] as b:
            await wait_for(lambda: a.status().fleet.lease_usd and b.status().fleet.lease_usd)
            r, _ = await a.ask(max_tokens=10)
            assert r.backend == "cloud"
            await wait_for(lambda: a.status().fleet.heartbeats_sent >= 3)  # a beat after the answer
            config = str(tmp_path / "kiosk-1" / "core.toml")  # the file `edge serve --config` would read
            # In a thread: the boxes keep beating while the command runs.
            shown = await asyncio.to_thread(edge_cli, "fleet", "status", "--config", config, "--json")
            table = await asyncio.to_thread(edge_cli, "fleet", "status", "-c", config)
            metrics = scrape(a.engine.runtime.metrics, a.engine.snapshot)
        assert 'edge_fleet_connected{box="kiosk-1"} 1.0' in metrics
        lease = re.search(r'^edge_fleet_lease_usd\{box="kiosk-1"\} (\S+)$', metrics, re.M)
        assert lease and float(lease.group(1)) == pytest.approx(0.01 - r.cost_usd)
        assert 'edge_fleet_pending{box="kiosk-1"}' in metrics
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        boxes = {x["name"]: x for x in view["boxes"]}
        assert view["fleet"] == "shop" and set(boxes) == {"kiosk-1", "kiosk-2"}
        assert view["budget_limit_usd"] == 1.0 and view["budget_leased_usd"] == pytest.approx(0.02)
        for x in boxes.values():
            assert x["version"] and x["model"] == "fake" and not x["away"] and x["age_s"] < 5
        assert boxes["kiosk-1"]["spend_today_usd"] == pytest.approx(r.cost_usd)
        assert boxes["kiosk-2"]["spend_today_usd"] == 0
        assert boxes["kiosk-1"]["lease_usd"] == pytest.approx(0.01 - r.cost_usd)
        lines = table.stdout.splitlines()
        assert lines[0].startswith("fleet 'shop' on 127.0.0.1:") and "2 boxes" in lines[0]
        assert lines[1].split() == ["box", "last", "heartbeat", "version", "model", "spend", "today", "lease"]
        assert lines[2].startswith("kiosk-1 ") and "$0.001005" in lines[2] and lines[3].startswith("kiosk-2 ")

    asyncio.run(scenario())


def test_edge_fleet_status_says_in_one_line_when_there_is_no_fleet_to_read(tmp_path):
    alone = tmp_path / "alone.toml"
    alone.write_text(fake_config())
    r = edge_cli("fleet", "status", "-c", str(alone))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no fleet configured" in r.stderr
    away = tmp_path / "away.toml"
    away.write_text(fleet_toml(f"nats://127.0.0.1:{free_port()}"))
    r = edge_cli("fleet", "status", "-c", str(away))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no fleet server reachable" in r.stderr
    server = NatsServer(tmp_path, None, "--user", "edge", "--pass", "right").start()
    try:
        refused = tmp_path / "refused.toml"
        refused.write_text(fleet_toml(f"nats://edge:wrong@127.0.0.1:{server.port}"))
        r = edge_cli("fleet", "status", "-c", str(refused))
    finally:
        server.stop()
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "authorization refused" in r.stderr
    assert "wrong" not in r.stderr  # a password in a server URL is never shown


def test_the_lease_follows_the_boxs_spend_rate():
    from edge.fleet.budget import FleetBudget

    from .conftest import FakeClock

    clock = FakeClock(1_800_000_000.0)
    budget = FleetBudget(None, limit_usd=10.0, lease_usd=0.5, clock=clock)  # type: ignore[arg-type]
    assert budget.next_lease() == 0.5  # nothing spent yet: the configured lease
    for i in range(10):  # $0.01 over a minute: $0.02 in the two minutes a lease should last
        clock.advance(6)
        budget.settle(f"r{i}", 0.001)
    assert budget.next_lease() == pytest.approx(0.05)  # ...but no less than a tenth of lease_usd
    for i in range(50):  # $0.5 in the next 50 s: a lease of $1.0 would last two minutes ...
        clock.advance(1)
        budget.settle(f"s{i}", 0.01)
    assert budget.next_lease() == 0.5  # ... and no lease is larger than lease_usd
    clock.advance(600)  # ten quiet minutes
    assert budget.next_lease() == pytest.approx(0.05)
    budget.lease_left = 0.0
    assert not budget.allows(0.2, "big")[0]  # a request larger than the lease would be ...
    assert budget.next_lease() == pytest.approx(0.2)  # ... is covered by the next one
