"""Server behaviour on the shipped FakeBackend: same thread hand-off, queue and
cancellation path as the real model, so these run in seconds without a model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from edge.client import build_request
from edge.server import probe_listener
from edge.v1 import router_pb2 as pb

from .conftest import NOT_SERVING, SERVING, core_settings, fake_config, health_status, wait_until

LONG_REPLY = " ".join(f"w{i}" for i in range(200))


def test_unary_answer_carries_served_by_timings_and_trace(daemon_factory):
    d = daemon_factory(fake_config(reply="Paris is the capital."))
    r = d.client().ask("What is the capital of France?", request_id="req-1")
    assert r.text == "Paris is the capital."
    assert r.request_id == "req-1"
    assert r.finish_reason == "stop"
    assert r.usage.completion_tokens == 4
    assert r.usage.prompt_tokens > 0
    assert r.served_by.tier == pb.TIER_LOCAL and r.served_by.model == "fake"
    assert r.timings.total_ms >= r.timings.time_to_first_token_ms > 0
    assert [x.code for x in r.trace] == ["LOCAL_ONLY_TIER"]
    assert not r.degraded


def test_stream_delivers_deltas_then_one_final(daemon_factory):
    d = daemon_factory(fake_config(reply="one two three", token_delay_ms=5))
    msgs = list(d.client().stream("hi"))
    deltas = [m.delta for m in msgs if m.WhichOneof("event") == "delta"]
    finals = [m.final for m in msgs if m.WhichOneof("event") == "final"]
    assert deltas == ["one", " two", " three"]
    assert len(finals) == 1 and msgs[-1].WhichOneof("event") == "final"
    assert finals[0].text == "one two three" and finals[0].finish_reason == "stop"


def test_max_tokens_and_stop_sequences(daemon_factory):
    d = daemon_factory(fake_config(reply="a b c d e f"))
    c = d.client()
    r = c.ask("x", max_tokens=2)
    assert (r.text, r.finish_reason, r.usage.completion_tokens) == ("a b", "length", 2)
    r = c.ask("x", stop=[" d"])
    assert (r.text, r.finish_reason) == ("a b c", "stop")


def test_request_id_is_assigned_when_empty(daemon_factory):
    d = daemon_factory(fake_config(reply="ok"))
    a, b = d.client().ask("x"), d.client().ask("x")
    assert a.request_id and b.request_id and a.request_id != b.request_id


BAD_REQUESTS = [
    # (description, request, expected code, words the message must contain)
    ("no messages", pb.GenerateRequest(), grpc.StatusCode.INVALID_ARGUMENT, ["messages", "at least one"]),
    ("unknown role", pb.GenerateRequest(messages=[pb.ChatMessage(role="wizard", content="hi")]),
     grpc.StatusCode.INVALID_ARGUMENT, ["messages[0].role", "wizard", "user"]),
    ("content over limit", build_request("x" * 5000), grpc.StatusCode.INVALID_ARGUMENT,
     ["messages", "5000 bytes", "4096"]),
    ("max_tokens negative", build_request("hi", max_tokens=-1), grpc.StatusCode.INVALID_ARGUMENT,
     ["params.max_tokens", "positive"]),
    ("max_tokens over cap", build_request("hi", max_tokens=100_000), grpc.StatusCode.INVALID_ARGUMENT,
     ["params.max_tokens", "100000", "512"]),
    ("temperature high", build_request("hi", temperature=2.5), grpc.StatusCode.INVALID_ARGUMENT,
     ["params.temperature", "between 0 and 2"]),
    ("temperature nan", build_request("hi", temperature=float("nan")), grpc.StatusCode.INVALID_ARGUMENT,
     ["params.temperature"]),
    ("top_p zero", build_request("hi", top_p=0.0), grpc.StatusCode.INVALID_ARGUMENT, ["params.top_p"]),
    ("top_p over one", build_request("hi", top_p=1.5), grpc.StatusCode.INVALID_ARGUMENT, ["params.top_p", "1.5"]),
    ("empty stop", build_request("hi", stop=[""]), grpc.StatusCode.INVALID_ARGUMENT, ["params.stop[0]", "empty"]),
    ("unknown model", build_request("hi", model="gpt-9"), grpc.StatusCode.NOT_FOUND, ["gpt-9", "fake"]),
    ("prompt longer than context", build_request(" ".join(["word"] * 700)), grpc.StatusCode.INVALID_ARGUMENT,
     ["messages", "context of 512 tokens"]),
    ("only empty content", build_request(""), grpc.StatusCode.INVALID_ARGUMENT, ["messages", "empty"]),
    ("no user message", pb.GenerateRequest(messages=[pb.ChatMessage(role="system", content="be nice")]),
     grpc.StatusCode.INVALID_ARGUMENT, ["role 'user'"]),
    ("cloud only without remote tier", build_request("hi", preference="cloud_only"), grpc.StatusCode.UNAVAILABLE,
     ["CLOUD_ONLY", "no remote tier"]),
]


@pytest.fixture(scope="module")
def limits_daemon(tmp_path_factory):
    from .conftest import start_daemon

    tmp = tmp_path_factory.mktemp("limits")
    cfg = fake_config(reply="fine", n_ctx=512) + "\n[limits]\nmax_content_bytes = 4096\nmax_tokens_cap = 512\n"
    d = start_daemon(tmp, cfg)
    yield d
    d.stop()


@pytest.mark.parametrize("desc,request_,code,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_clear_status_and_message(limits_daemon, desc, request_, code, words):
    c = limits_daemon.client()
    for call in (lambda: c.generate(request_, timeout=10), lambda: list(c._stub.GenerateStream(request_, timeout=10))):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == code, info.value.details()
        for w in words:
            assert w in info.value.details(), (w, info.value.details())
    # The daemon is unhurt: the next good request is answered.
    assert c.ask("still there?", timeout=10).text == "fine"


def test_queue_full_is_rejected_at_once_while_others_complete(daemon_factory):
    d = daemon_factory(fake_config(reply=" ".join(["tok"] * 30), token_delay_ms=20, queue_size=1))
    c = d.client()
    first = c.stream("a")
    assert next(first).delta  # the first request holds the model
    results: dict[str, object] = {}
    t = threading.Thread(target=lambda: results.setdefault("second", c.ask("b", timeout=30)))
    t.start()
    wait_until(lambda: c.status().models[0].queue_depth == 1)
    with pytest.raises(grpc.RpcError) as info:
        c.ask("c", timeout=30)
    # Rejected at once: the first request still holds the model and the second still waits.
    m = c.status().models[0]
    assert m.active == 1 and m.queue_depth == 1
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in info.value.details() and "limit 1" in info.value.details()
    rest = list(first)
    assert rest[-1].final.finish_reason == "stop" and rest[-1].final.usage.completion_tokens == 30
    t.join(30)
    assert results["second"].usage.completion_tokens == 30
    assert c.status().models[0].rejected_total == 1


def test_deadline_while_generating_returns_deadline_exceeded_and_frees_the_slot(daemon_factory):
    d = daemon_factory(fake_config(reply=LONG_REPLY, token_delay_ms=10))
    c = d.client()
    with pytest.raises(grpc.RpcError) as info:
        c.ask("x", timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Generation stopped at the deadline: far fewer than the 200 tokens it would have made.
    status = wait_until(lambda: (s := c.status()).models[0].active == 0 and s)
    assert status.models[0].last_completion_tokens < 60
    assert c.ask("y", max_tokens=3, timeout=10).usage.completion_tokens == 3


def test_queue_wait_counts_against_the_deadline(daemon_factory):
    d = daemon_factory(fake_config(reply=LONG_REPLY, token_delay_ms=10, queue_size=4))
    c = d.client()
    busy = c.stream("a", max_tokens=150)
    next(busy)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        c.ask("b", timeout=0.3)  # never reaches the model: the slot is busy for ~1.5 s
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 1.0
    assert list(busy)[-1].final.usage.completion_tokens == 150


def test_cancelled_stream_stops_generation_and_next_request_is_served(daemon_factory):
    d = daemon_factory(fake_config(reply=LONG_REPLY, token_delay_ms=10))
    c = d.client()
    call = c.stream("x", max_tokens=200)
    for _ in range(3):
        next(call)
    call.cancel()
    status = wait_until(lambda: (s := c.status()).models[0].cancelled_total == 1 and s.models[0].active == 0 and s)
    assert status.models[0].last_completion_tokens < 30
    assert c.ask("again", max_tokens=2, timeout=10).text == "w0 w1"


def test_health_not_serving_until_model_loaded(daemon_factory):
    d = daemon_factory(fake_config(reply="ok", load_delay_ms=1500), wait_serving=False)
    assert health_status(d.target) == NOT_SERVING
    assert health_status(d.target, "edge.v1.EdgeRouter") == NOT_SERVING
    with pytest.raises(grpc.RpcError) as info:
        d.client().ask("early", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert d.client().status().state == "starting"
    d.wait_serving(30)
    assert health_status(d.target, "edge.v1.EdgeRouter") == SERVING
    assert d.client().ask("now").text == "ok"


def test_reflection_lists_the_service(daemon_factory):
    d = daemon_factory(fake_config(reply="ok"))
    with grpc.insecure_channel(d.target) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = db.get_services()
        assert "edge.v1.EdgeRouter" in services and "grpc.health.v1.Health" in services
        desc = db.FindFileContainingSymbol("edge.v1.EdgeRouter")
        assert desc.package == "edge.v1"
        assert {m.name for m in desc.service[0].method} >= {"Generate", "GenerateStream", "ListModels", "GetStatus"}


def test_list_models(daemon_factory):
    d = daemon_factory(fake_config(reply="ok", n_ctx=1024))
    models = d.client().list_models().models
    assert [(m.name, m.backend, m.is_default, m.state, m.context_length) for m in models] == [
        ("fake", "fake", True, "ready", 1024)]


def test_graceful_shutdown_finishes_in_flight_and_goes_not_serving(daemon_factory):
    d = daemon_factory(fake_config(reply=" ".join(["t"] * 40), token_delay_ms=25))
    c = d.client()
    with grpc.insecure_channel(d.target) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        call = c.stream("x")
        next(call)
        d.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        msgs = list(call)  # the in-flight answer still completes
    assert msgs[-1].final.finish_reason == "stop" and msgs[-1].final.usage.completion_tokens == 40
    assert d.proc.wait(30) == 0
    # and new requests are no longer accepted
    with pytest.raises(grpc.RpcError) as info:
        c.ask("late", timeout=2)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_shutdown_grace_bounds_the_wait(daemon_factory):
    d = daemon_factory(fake_config(reply=LONG_REPLY, token_delay_ms=50, grace_s=0.5))
    call = d.client().stream("x")
    next(call)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert time.monotonic() - t0 < 5  # the 10 s answer was cut at the grace, not waited for
    with pytest.raises(grpc.RpcError):
        list(call)


def test_unix_socket_with_mode_0600(daemon_factory, tmp_path):
    sock = tmp_path / "edge.sock"
    d = daemon_factory(fake_config(reply="over unix", server_extra=f'unix_socket = "{sock}"'))
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    from edge.client import Client

    with Client(f"unix:{sock}") as c:
        assert c.ask("hi").text == "over unix"
    assert d.stop() == 0
    assert not sock.exists()


def test_concurrent_clients_one_bad_request_hurts_no_one(daemon_factory):
    d = daemon_factory(fake_config(reply="good answer", token_delay_ms=5))
    errors: list[str] = []
    answers: list[str] = []

    def good() -> None:
        answers.append(d.client().ask("q", timeout=30).text)

    def bad() -> None:
        try:
            d.client().ask("q", temperature=9.0, timeout=30)
        except grpc.RpcError as exc:
            errors.append(exc.code().name)

    threads = [threading.Thread(target=good if i % 2 else bad) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == ["good answer"] * 4
    assert errors == ["INVALID_ARGUMENT"] * 4


def test_slow_reader_gets_merged_deltas_and_loses_nothing(daemon_factory):
    reply = " ".join(f"t{i}" for i in range(1500))
    d = daemon_factory(fake_config(reply=reply))
    deltas, final = [], None
    for msg in d.client().stream("x", max_tokens=1500, timeout=60):
        if msg.WhichOneof("event") == "delta":
            deltas.append(msg.delta)
            time.sleep(0.002)  # a reader slower than the generator
        else:
            final = msg.final
    assert "".join(deltas) == reply == final.text
    assert final.usage.completion_tokens == 1500
    assert len(deltas) < 1500  # text that piled up went out in fewer messages


def test_local_only_preference_is_recorded_in_the_trace(daemon_factory):
    d = daemon_factory(fake_config(reply="ok"))
    r = d.client().ask("x", preference="local_only")
    assert [x.code for x in r.trace] == ["PREF_LOCAL_ONLY"]
    assert r.served_by.tier == pb.TIER_LOCAL


# -- field trials: which listeners actually work ------------------------------------------------

def test_probe_listener_connects_to_a_listening_socket(tmp_path):
    """The start-up self-check: a bound, listening socket is reachable, by its own address,
    through loopback when bound to a wildcard, and on a unix socket."""
    with socket.create_server(("127.0.0.1", 0)) as tcp, socket.create_server(("0.0.0.0", 0)) as wild, \
            socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "s.sock"))
        unix.listen()
        assert asyncio.run(probe_listener(f"127.0.0.1:{tcp.getsockname()[1]}")) == ""
        assert asyncio.run(probe_listener(f"0.0.0.0:{wild.getsockname()[1]}")) == ""
        assert asyncio.run(probe_listener(f"unix:{tmp_path / 's.sock'}")) == ""


def test_probe_listener_names_the_address_and_the_error_when_nothing_answers(tmp_path):
    with socket.socket() as reserved:  # bound, never listening: the port is ours and refuses
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        assert asyncio.run(probe_listener(f"127.0.0.1:{port}")) == f"127.0.0.1:{port}: Connection refused"
        assert asyncio.run(probe_listener(f"0.0.0.0:{port}")) == f"127.0.0.1:{port}: Connection refused"
    assert asyncio.run(probe_listener(f"unix:{tmp_path / 'none.sock'}")) == (
        f"unix:{tmp_path / 'none.sock'}: No such file or directory")
    with socket.create_server(("127.0.0.1", 0)) as tcp:  # no time at all to connect: a timeout, named
        assert asyncio.run(probe_listener(f"127.0.0.1:{tcp.getsockname()[1]}", timeout_s=0)) == (
            f"127.0.0.1:{tcp.getsockname()[1]}: no answer within 0 s")


def test_listening_line_says_which_listeners_were_reachable(daemon_factory, tmp_path):
    """Field trial: with loopback down the daemon said "serving" though no client could
    connect. The `listening` line now carries each listener's self-check (taking loopback
    down needs root; the unreachable case is the probe's own test above)."""
    d = daemon_factory(fake_config(reply="ok", server_extra=f'unix_socket = "{tmp_path / "e.sock"}"')
                       + '[http]\nlisten = "127.0.0.1:0"\n[metrics]\nlisten = "127.0.0.1:0"\n')
    [line] = [json.loads(x) for x in d.logs().splitlines() if x.startswith("{") and '"msg": "listening"' in x]
    assert line["reachable"] == {"tcp": True, "unix": True, "http": True, "metrics": True}
    assert line["addresses"] == {k: v for k, v in d.addresses.items() if k != "pid"}
    assert "not reachable" not in d.logs()
    assert d.client().ask("x").text == "ok"


def test_unreachable_listeners_are_warned_about_and_none_reachable_is_an_error(tmp_path, caplog):
    """The daemon's check over its bound addresses: each unreachable one is a warning naming
    the address and the error; start-up goes on; when none answers, an error says so."""
    from edge.server import Daemon

    async def check(addresses: dict[str, str]) -> Daemon:
        daemon = Daemon(core_settings(tmp_path, fake_config(reply="ok")))
        daemon.addresses = addresses
        await daemon._check_listeners()
        await daemon.engine.close()
        return daemon

    with socket.socket() as refusing, socket.socket(socket.AF_UNIX) as unix:
        refusing.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{refusing.getsockname()[1]}"
        unix.bind(str(tmp_path / "s.sock"))
        unix.listen()
        caplog.set_level("INFO", logger="edge.server")
        d = asyncio.run(check({"tcp": dead, "unix": f"unix:{tmp_path / 's.sock'}"}))
        assert d.unreachable == {"tcp": f"{dead}: Connection refused"}
        [listening] = [r for r in caplog.records if r.msg == "listening"]
        assert listening.reachable == {"tcp": False, "unix": True}
        [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
        assert (warning.msg, warning.listener, warning.address, warning.error) == (
            "listener not reachable from this machine", "tcp", dead, f"{dead}: Connection refused")
        assert not [r for r in caplog.records if r.levelname == "ERROR"]

        caplog.clear()
        asyncio.run(check({"tcp": dead}))
        [error] = [r for r in caplog.records if r.levelname == "ERROR"]
        assert error.msg.startswith("no listener is reachable from this machine")
        assert error.unreachable == {"tcp": f"{dead}: Connection refused"}
