"""Remote tiers against loopback servers that speak each provider's real wire format.

Chain in these tests: onprem (OpenAI-compatible) -> cloud (Anthropic, then Gemini) ->
local (the fake backend, so answers are instant and recognisable).
"""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from edge.testing.providers import Fault, ProviderServer, continuing
from edge.v1 import router_pb2 as pb

from .conftest import fake_config
from .test_server import wait_until

REPLY = "The quick brown fox jumps over the lazy dog near the quiet river bank today."
LOCAL_REPLY = "local answer"
SECRET = "sk-test-SECRET-never-log-me-42"


def remote_config(*servers: tuple[str, str, ProviderServer], first_byte_s: float = 0.5, idle_s: float = 0.5,
                  extra: str = "", resilience: dict | None = None, local_reply: str = LOCAL_REPLY) -> str:
    # "chain": these tests exercise failover, so AUTO requests go remote first whatever
    # the routing signals would say (the policy has its own tests).
    if "[routing]" in extra:
        extra = extra.replace("[routing]", '[routing]\nstrategy = "chain"')
    else:
        extra = '[routing]\nstrategy = "chain"\n' + extra
    out = [fake_config(reply=local_reply), extra]
    knobs = {"backoff_base_s": 0.01, "probe_interval_s": 0.5, "breaker_cooldown_s": 1, **(resilience or {})}
    out.append("[resilience]\n" + "".join(f"{k} = {v}\n" for k, v in knobs.items()))
    for tier, name, srv in servers:
        key_env = f'api_key_env = "EDGE_TEST_KEY_{name.upper().replace("-", "_")}"' if srv.kind != "openai" or tier == "cloud" else ""
        out.append(f"""
[[{tier}]]
name = "{name}"
kind = "{srv.kind}"
base_url = "{srv.base_url}"
model = "test-model"
{key_env}
connect_timeout_s = 0.5
first_byte_timeout_s = {first_byte_s}
idle_timeout_s = {idle_s}
total_timeout_s = 10
""")
    return "\n".join(out)


def key_env(*names: str) -> dict[str, str]:
    return {f"EDGE_TEST_KEY_{n.upper().replace('-', '_')}": SECRET for n in names}


@pytest.fixture
def providers():
    started: list[ProviderServer] = []

    def make(kind: str, **kw) -> ProviderServer:
        srv = ProviderServer(kind, reply=kw.pop("reply", continuing(REPLY)), **kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def ask(d, stream: bool = False, timeout: float = 10, **kw):
    c = d.client()
    if not stream:
        return c.ask("Tell me about the fox.", timeout=timeout, **kw), []
    msgs = list(c.stream("Tell me about the fox.", timeout=timeout, **kw))
    return msgs[-1].final, msgs


def outcomes(r) -> list[tuple[str, str]]:
    return [(a.backend, a.outcome) for a in r.attempts]


# -- healthy paths, each provider's protocol ---------------------------------------------

@pytest.mark.parametrize("kind,tier", [("openai", "onprem"), ("openai", "cloud"), ("anthropic", "cloud"),
                                       ("gemini", "cloud")])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_each_provider_answers_unary_and_streaming(daemon_factory, providers, kind, tier, stream):
    srv = providers(kind, api_key=SECRET if tier == "cloud" or kind != "openai" else None)
    d = daemon_factory(remote_config((tier, "remote-1", srv)), env=key_env("remote-1"))
    r, msgs = ask(d, stream=stream)
    assert r.text == REPLY
    assert r.served_by.backend == "remote-1" and r.served_by.tier == (pb.TIER_ONPREM if tier == "onprem" else pb.TIER_CLOUD)
    assert r.usage.completion_tokens == len(REPLY.split()) and r.usage.prompt_tokens > 0
    assert outcomes(r) == [("remote-1", "ok")] and not r.degraded
    if stream:
        assert sum(1 for m in msgs if m.WhichOneof("event") == "delta") > 3
    body = srv.requests[-1].body
    assert body is not None and json.dumps(body).find("Tell me about the fox.") >= 0


# -- every fault: a full answer from the next backend, within the deadline ----------------

FAULTS = [
    ("refused", Fault("refuse")),
    ("hang", Fault("hang")),
    ("slow_first_byte", Fault("slow_first_byte", delay_s=2.0)),
    ("http_500", Fault("status", status=500)),
    ("http_429", Fault("status", status=429, retry_after=30)),
    ("malformed_json", Fault("malformed_json")),
    ("unauthorized", Fault("unauthorized")),
]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("name,fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_fails_over_to_the_next_backend(daemon_factory, providers, name, fault, stream):
    lan = providers("openai")
    cloud = providers("anthropic", api_key=SECRET)
    lan.set_fault(fault)
    d = daemon_factory(remote_config(("onprem", "lan", lan), ("cloud", "claude", cloud)), env=key_env("claude"))
    t0 = time.monotonic()
    r, _ = ask(d, stream=stream, timeout=8)
    assert time.monotonic() - t0 < 8
    assert r.text == REPLY and r.served_by.backend == "claude"
    assert outcomes(r)[-1] == ("claude", "ok") and outcomes(r)[0][0] == "lan"
    assert "FAILOVER" in [x.code for x in r.trace]
    expected = "misconfigured" if name == "unauthorized" else "retryable_error"
    assert outcomes(r)[0][1] == expected
    assert r.attempts[0].detail  # why it moved on


def test_stream_cut_midway_continues_on_the_next_backend_and_says_so(daemon_factory, providers):
    lan = providers("openai", token_delay_s=0.01)
    cloud = providers("anthropic", api_key=SECRET)
    lan.set_fault(Fault("cut_stream", after_events=4))
    d = daemon_factory(remote_config(("onprem", "lan", lan), ("cloud", "claude", cloud)), env=key_env("claude"))
    final, msgs = ask(d, stream=True)
    events = [m.WhichOneof("event") for m in msgs]
    notice_at = events.index("notice")
    assert 0 < notice_at < len(events) - 1 and events[-1] == "final"
    assert msgs[notice_at].notice.code == "FAILOVER_MID_STREAM"
    text = "".join(m.delta for m in msgs if m.WhichOneof("event") == "delta")
    assert text == final.text == REPLY  # continued, not restarted, not truncated
    # The next backend was asked to continue the partial answer.
    sent_prefix = "".join(m.delta for m in msgs[:notice_at] if m.WhichOneof("event") == "delta")
    last = cloud.requests[-1].body["messages"][-1]
    assert last["role"] == "assistant" and sent_prefix.strip() in json.dumps(last)
    assert outcomes(final) == [("lan", "retryable_error"), ("claude", "ok")]


def test_all_remote_tiers_down_serves_locally_marked_degraded(daemon_factory, providers):
    lan = providers("openai")
    cloud = providers("gemini", api_key=SECRET)
    lan.set_fault(Fault("refuse"))
    cloud.set_fault(Fault("status", status=503))
    d = daemon_factory(remote_config(("onprem", "lan", lan), ("cloud", "gem", cloud)), env=key_env("gem"))
    for stream in (False, True):
        r, _ = ask(d, stream=stream)
        assert r.text == LOCAL_REPLY and r.served_by.tier == pb.TIER_LOCAL and r.degraded
        degraded = [x for x in r.trace if x.code == "DEGRADED_LOCAL"]
        assert degraded and "gem" in degraded[0].detail and "lan" in degraded[0].detail
    with pytest.raises(grpc.RpcError) as info:
        d.client().ask("x", preference="cloud_only", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "lan" in info.value.details()


def test_provider_400_is_invalid_argument_with_the_providers_reason(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("status", status=400))
    d = daemon_factory(remote_config(("onprem", "lan", lan)))
    with pytest.raises(grpc.RpcError) as info:
        d.client().ask("x", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "lan" in info.value.details()
    assert len(lan.requests) == 1  # the client's fault: no retry, no failover


def test_retry_after_is_honoured_when_the_deadline_allows(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("status", status=429, retry_after=0.3, times=1))
    d = daemon_factory(remote_config(("onprem", "lan", lan)))
    r, _ = ask(d, timeout=10)
    assert r.served_by.backend == "lan" and outcomes(r) == [("lan", "retryable_error"), ("lan", "ok")]
    assert lan.requests[1].time - lan.requests[0].time >= 0.3


def test_retry_after_longer_than_the_deadline_moves_on_at_once(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("status", status=429, retry_after=60))
    d = daemon_factory(remote_config(("onprem", "lan", lan)))
    t0 = time.monotonic()
    r, _ = ask(d, timeout=5)
    assert time.monotonic() - t0 < 2 and r.served_by.tier == pb.TIER_LOCAL
    assert ("lan", "no_time") in outcomes(r) and len(lan.requests) == 1


def test_flapping_provider_loses_no_request(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("flap"))
    d = daemon_factory(remote_config(("onprem", "lan", lan), resilience={"breaker_failures": 50}))
    results = [ask(d, timeout=10)[0] for _ in range(12)]
    assert all(r.text in (REPLY, LOCAL_REPLY) for r in results)
    # Each 503 is retried on the same backend and the retry lands on an "up" phase...
    assert [outcomes(r) for r in results[:4]] == [[("lan", "ok")]] + [[("lan", "retryable_error"), ("lan", "ok")]] * 3
    # ...until half of the breaker's window (10 outcomes) has failed: then it opens.
    assert d.client().status().backends[0].breaker_opened_total >= 1
    assert any(("lan", "breaker_open") in outcomes(r) for r in results[4:])


# -- breaker --------------------------------------------------------------------------------

def test_breaker_opens_stops_traffic_probes_once_and_closes_on_recovery(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("status", status=500))
    d = daemon_factory(remote_config(("onprem", "lan", lan), resilience={"max_retries": 0, "breaker_failures": 2, "breaker_cooldown_s": 1.5, "probe_interval_s": 600}))
    c = d.client()
    for _ in range(2):
        assert ask(d)[0].served_by.tier == pb.TIER_LOCAL
    assert len(lan.requests) == 2
    status = c.status()
    assert status.backends[0].breaker == "open" and status.network == "down"
    # Open: requests skip it at no cost, the provider sees nothing.
    for _ in range(5):
        r, _ = ask(d)
        assert outcomes(r)[0] == ("lan", "breaker_open") and r.attempts[0].latency_ms == 0
    assert len(lan.requests) == 2
    # After the cooldown exactly one probe gets through; it fails and the breaker re-opens.
    time.sleep(1.6)
    results = []
    threads = [threading.Thread(target=lambda: results.append(ask(d)[0])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(lan.requests) == 3
    assert c.status().backends[0].retry_in_s > 1.5  # the repeat offender waits longer
    # Recovery: the next probe succeeds and closes the breaker; traffic returns.
    lan.set_fault(None)
    wait_until(lambda: c.status().backends[0].retry_in_s == 0, timeout=10)
    assert ask(d)[0].served_by.backend == "lan"
    assert c.status().backends[0].breaker == "closed" and c.status().network == "up"


def test_active_probe_returns_traffic_soon_after_the_network_does(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("refuse"))
    d = daemon_factory(remote_config(("onprem", "lan", lan), resilience={"max_retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 600, "probe_interval_s": 0.3}))
    assert ask(d)[0].served_by.tier == pb.TIER_LOCAL
    assert d.client().status().network == "down"
    lan.set_fault(None)
    t0 = time.monotonic()
    # Despite a 600 s cooldown, the probe brings it back within about one interval.
    wait_until(lambda: ask(d)[0].served_by.backend == "lan", timeout=5, interval=0.1)
    assert time.monotonic() - t0 < 2


def test_misconfigured_backend_is_taken_out_of_rotation_with_a_status_entry(daemon_factory, providers):
    cloud = providers("anthropic", api_key="the-right-key")
    d = daemon_factory(remote_config(("cloud", "claude", cloud)), env=key_env("claude"))  # sends SECRET: wrong
    r, _ = ask(d)
    assert r.served_by.tier == pb.TIER_LOCAL and outcomes(r)[0] == ("claude", "misconfigured")
    r, _ = ask(d)
    assert outcomes(r)[0] == ("claude", "out_of_rotation") and len(cloud.requests) == 1
    st = d.client().status().backends[0]
    assert "401" in st.out_of_rotation and st.name == "claude"


# -- never leaves the device ------------------------------------------------------------------

def test_local_only_request_and_config_send_nothing(daemon_factory, providers):
    lan = providers("openai")
    cloud = providers("anthropic", api_key=SECRET)
    d = daemon_factory(remote_config(("onprem", "lan", lan), ("cloud", "claude", cloud)), env=key_env("claude"))
    r, _ = ask(d, preference="local_only")
    assert r.text == LOCAL_REPLY and [x.code for x in r.trace] == ["PREF_LOCAL_ONLY"]
    d2 = daemon_factory(remote_config(("onprem", "lan", lan), ("cloud", "claude", cloud),
                                      extra="[routing]\nlocal_only = true\n"), env=key_env("claude"))
    r, _ = ask(d2, stream=True)
    assert r.text == LOCAL_REPLY and [x.code for x in r.trace] == ["CONFIG_LOCAL_ONLY"]
    time.sleep(1.0)  # several probe intervals: still nothing
    assert lan.requests == [] and cloud.requests == []


def test_offline_mode_contacts_nothing_not_even_a_probe(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("refuse"))
    d = daemon_factory(remote_config(("onprem", "lan", lan), extra="[routing]\noffline = true\n"))
    r, _ = ask(d)
    assert r.text == LOCAL_REPLY and [x.code for x in r.trace] == ["OFFLINE_MODE"]
    with pytest.raises(grpc.RpcError) as info:
        d.client().ask("x", preference="cloud_only", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "offline" in info.value.details()
    lan.set_fault(None)
    time.sleep(1.0)
    assert lan.requests == [] and d.client().status().network == "offline"


def test_api_keys_never_appear_in_logs_status_or_traces(daemon_factory, providers):
    cloud = providers("anthropic", api_key="a-different-key")
    gem = providers("gemini", api_key=SECRET)
    gem.set_fault(Fault("status", status=500))
    d = daemon_factory(remote_config(("cloud", "claude", cloud), ("cloud", "gem", gem)),
                       env=key_env("claude", "gem"))
    r, _ = ask(d)
    status = d.client().status()
    assert SECRET not in str(r) and SECRET not in str(status)
    assert SECRET not in d.logs()
    assert any(req.headers.get("x-goog-api-key") == SECRET for req in gem.requests)  # it was sent, to the provider


# -- many requests while the provider dies and comes back -----------------------------------------

def test_kill_and_restart_the_provider_under_load_loses_nothing(daemon_factory, providers):
    lan = providers("openai", token_delay_s=0.005)
    # The local fake knows the same answer, so a stream cut by the kill is continued, not restarted.
    d = daemon_factory(remote_config(("onprem", "lan", lan), local_reply=REPLY,
                                     resilience={"probe_interval_s": 0.2, "breaker_cooldown_s": 0.5}))
    errors: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        c = d.client()
        while not stop.is_set():
            try:
                for stream in (False, True):
                    r, _ = ask(d, stream=stream, timeout=15)
                    assert r.text == REPLY, r.text
                    served.append(r.served_by.backend)
            except Exception as exc:  # noqa: BLE001 - counted, asserted below
                errors.append(repr(exc))
        c.close()

    threads = [threading.Thread(target=client_loop) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    lan.stop()          # killed mid-traffic
    time.sleep(1.5)
    before_restart = len(lan.requests)
    lan.start()         # back on the same port
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert "local" in served and served.count("lan") > 0
    assert len(lan.requests) > before_restart  # traffic returned to the provider


def test_edge_status_shows_backends_breakers_and_network(daemon_factory, providers):
    import subprocess
    import sys

    lan = providers("openai")
    lan.set_fault(Fault("refuse"))
    d = daemon_factory(remote_config(("onprem", "lan", lan), resilience={"max_retries": 0, "breaker_failures": 1,
                                                                         "probe_interval_s": 600}))
    ask(d)
    out = subprocess.run([sys.executable, "-m", "edge", "status", "--target", d.target], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "network: down" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.startswith("lan "))
    assert "onprem" in line and "open" in line and "next probe in" in line


def test_onprem_pool_balances_by_least_outstanding_requests(daemon_factory, providers):
    a = providers("openai", token_delay_s=0.05)
    b = providers("openai", token_delay_s=0.05)
    d = daemon_factory(remote_config(("onprem", "lan-a", a), ("onprem", "lan-b", b), first_byte_s=2))
    served: list[str] = []
    threads = [threading.Thread(target=lambda: served.append(ask(d, timeout=20)[0].served_by.backend))
               for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # each arrives while the earlier ones are still streaming
    for t in threads:
        t.join(30)
    # Config order alone would send all four to lan-a; least outstanding splits them.
    assert sorted(served) == ["lan-a", "lan-a", "lan-b", "lan-b"]
