"""Remote tiers end to end: a real daemon against loopback servers over real TCP.

The failover, breaker, retry and routing rules are tested in-process in
tests/test_core.py; this file keeps what only a real daemon and real sockets show:
each adapter over TCP (connection pools, a hang, a slow first byte, a cut
connection), the background probe loop, keys kept out of logs, a provider killed
and restarted under load, and `edge status`.

Chain in these tests: onprem (OpenAI-compatible) -> cloud (Anthropic, then Gemini) ->
local (the fake backend, so answers are instant and recognisable).
"""

from __future__ import annotations

import json

from edge.backends.remote import CONTINUE_INSTRUCTION
import threading
import pytest

from edge.testing.providers import Fault, ProviderServer, continuing
from edge.v1 import router_pb2 as pb

from .conftest import fake_config, wait_until

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

@pytest.mark.parametrize("kind,tier,stream", [("openai", "onprem", False), ("openai", "cloud", True),
                                              ("anthropic", "cloud", True), ("gemini", "cloud", True)])
def test_each_provider_answers_over_tcp(daemon_factory, providers, kind, tier, stream):
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

# What a socket does wrong (the error statuses and bodies are covered in-process).
FAULTS = [
    ("refused", Fault("refuse")),
    ("hang", Fault("hang")),
    ("slow_first_byte", Fault("slow_first_byte", delay_s=2.0)),
]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("name,fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_socket_fault_fails_over_to_the_next_backend(daemon_factory, providers, name, fault, stream):
    lan = providers("openai")
    cloud = providers("anthropic", api_key=SECRET)
    lan.set_fault(fault)
    d = daemon_factory(remote_config(("onprem", "lan", lan), ("cloud", "claude", cloud)), env=key_env("claude"))
    r, _ = ask(d, stream=stream, timeout=8)  # a timeout would be DEADLINE_EXCEEDED: it answered in time
    assert r.text == REPLY and r.served_by.backend == "claude"
    assert outcomes(r)[-1] == ("claude", "ok") and outcomes(r)[0][0] == "lan"
    assert "FAILOVER" in [x.code for x in r.trace]
    assert outcomes(r)[0][1] == "retryable_error"
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
    # The next backend was asked to continue the partial answer: Anthropic by instruction
    # (the text so far as the assistant's turn, then the request to continue it); it
    # answered afresh and edge dropped the repeated part, so the client saw no restart.
    sent_prefix = "".join(m.delta for m in msgs[:notice_at] if m.WhichOneof("event") == "delta")
    partial, last = cloud.requests[-1].body["messages"][-2:]
    assert partial == {"role": "assistant", "content": sent_prefix} and last["content"] == CONTINUE_INSTRUCTION
    assert outcomes(final) == [("lan", "retryable_error"), ("claude", "ok")]












# -- the probe loop and what only the daemon's logs and CLI show ---------------------------



def test_active_probe_returns_traffic_soon_after_the_network_does(daemon_factory, providers):
    lan = providers("openai")
    lan.set_fault(Fault("refuse"))
    d = daemon_factory(remote_config(("onprem", "lan", lan), resilience={"max_retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 600, "probe_interval_s": 0.3}))
    assert ask(d)[0].served_by.tier == pb.TIER_LOCAL
    assert d.client().status().network == "down"
    lan.set_fault(None)
    # Despite a 600 s cooldown, the probe loop brings it back.
    wait_until(lambda: ask(d)[0].served_by.backend == "lan", timeout=10, interval=0.1)








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
    wait_until(lambda: served.count("lan") >= 12, timeout=30)
    lan.stop()          # killed mid-traffic
    served_before = len(served)
    wait_until(lambda: served[served_before:].count("local") >= 12, timeout=30)  # the local model took over
    before_restart = len(lan.requests)
    lan.start()         # back on the same port
    wait_until(lambda: len(lan.requests) > before_restart + 6, timeout=30)  # the probe found it; traffic returned
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []


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

