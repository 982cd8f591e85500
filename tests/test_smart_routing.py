"""The routing brain end to end: signals measured by the daemon, decided by the policy."""

from __future__ import annotations

import threading
import time

import pytest

from edge.testing.providers import ProviderServer
from edge.v1 import router_pb2 as pb

from .conftest import fake_config, wait_until

LOCAL = " ".join(f"w{i}" for i in range(40))


def smart_config(srv: ProviderServer, *, token_delay_ms: float = 0, queue_size: int = 8, routing: str = "",
                 classifier: bool = False) -> str:
    return fake_config(reply=LOCAL, token_delay_ms=token_delay_ms, queue_size=queue_size) + f"""
[routing]
strategy = "smart"
classifier = {str(classifier).lower()}
device_load = false   # other programs on a busy test box must not decide before the step under test
{routing}

[[onprem]]
name = "lan"
base_url = "{srv.base_url}"
model = "m"
"""


@pytest.fixture
def lan(loopback) -> ProviderServer:
    return loopback(reply="remote answer")


def codes(r) -> list[str]:
    return [x.code for x in r.trace]


def test_no_signal_keeps_it_local_and_remote_untouched(daemon_factory, lan):
    d = daemon_factory(smart_config(lan))
    r = d.client().ask("hi", timeout=10)
    assert r.served_by.tier == pb.TIER_LOCAL and codes(r) == ["DEFAULT_LOCAL"] and not r.degraded
    assert lan.requests == []


def test_load_queue_depth_sends_new_work_remote(daemon_factory, lan):
    d = daemon_factory(smart_config(lan, token_delay_ms=20, routing="max_queue_depth = 1"))
    c = d.client()
    busy = c.stream("a", timeout=30)
    next(busy)  # the local model is generating
    waiting = threading.Thread(target=lambda: c.ask("b", timeout=30))
    waiting.start()
    wait_until(lambda: c.status().models[0].queue_depth == 1)
    r = c.ask("c", timeout=30)
    assert r.served_by.backend == "lan" and codes(r)[0] == "LOAD_QUEUE"
    list(busy)
    waiting.join(30)


def test_latency_ceiling_uses_rates_learned_from_traffic(daemon_factory, lan):
    d = daemon_factory(smart_config(lan, token_delay_ms=20))
    c = d.client()
    first = c.ask("warm up", max_tokens=20, timeout=30)  # teaches the daemon this model's rates
    assert first.served_by.tier == pb.TIER_LOCAL
    slow = c.ask("needs to be quick", max_tokens=40, max_latency_ms=200, timeout=30)
    assert slow.served_by.backend == "lan" and codes(slow)[0] == "LATENCY_LOCAL_TOO_SLOW"
    assert "ceiling 0.20s" in slow.trace[0].detail
    relaxed = c.ask("no hurry", max_tokens=40, max_latency_ms=60_000, timeout=30)
    assert relaxed.served_by.tier == pb.TIER_LOCAL and codes(relaxed)[0] == "LATENCY_LOCAL_OK"


def test_busy_local_model_overflows_to_remote(daemon_factory, lan):
    d = daemon_factory(smart_config(lan, token_delay_ms=20, queue_size=0))
    c = d.client()
    busy = c.stream("a", timeout=30)
    next(busy)
    t0 = time.monotonic()
    r = c.ask("b", timeout=30)
    assert r.served_by.backend == "lan" and time.monotonic() - t0 < 2
    assert [(a.backend, a.outcome) for a in r.attempts] == [("local", "queue_full"), ("lan", "ok")]
    assert not r.degraded
    list(busy)


def test_difficulty_classifier_sends_hard_requests_remote(daemon_factory, lan):
    d = daemon_factory(smart_config(lan, classifier=True))
    c = d.client()
    hard = c.ask("What is 738291 multiplied by 48213? Answer with the number only.", timeout=30)
    easy = c.ask("Write a short poem about the sea.", timeout=30)
    assert hard.served_by.backend == "lan" and [x.code for x in hard.trace][0] == "DIFFICULTY_HIGH"
    assert easy.served_by.tier == pb.TIER_LOCAL
    assert [x.code for x in easy.trace][0] in ("DIFFICULTY_LOW", "CASCADE_ARMED")
    score = lambda r: float(r.trace[0].detail.split()[1])  # noqa: E731 - "difficulty 0.94 >= 0.50"
    assert score(hard) > score(easy)


def cascade_config(srv: ProviderServer, min_mean: float) -> str:
    # Every request lands in the cascade band; the confidence threshold decides.
    return f"""
[server]
listen = "127.0.0.1:0"
[routing]
strategy = "smart"
profile_on_start = false
difficulty_threshold = 1.0
cascade_band = 0.0
cascade_min_mean_logprob = {min_mean}
cascade_min_token_logprob = -100
cascade_holdback_tokens = 8

[[onprem]]
name = "lan"
base_url = "{srv.base_url}"
model = "m"
"""


def test_cascade_escalates_an_unconfident_local_answer_before_the_client_sees_it(daemon_factory, lan,
                                                                                 default_model_path):
    d = daemon_factory(cascade_config(lan, min_mean=-0.0001))  # nothing real is that sure
    c = d.client()
    r = c.ask("Write a random string of 12 letters.", max_tokens=32, timeout=300)
    assert r.served_by.backend == "lan" and r.text == "remote answer"
    assert [(a.backend, a.outcome) for a in r.attempts] == [("local", "low_confidence"), ("lan", "ok")]
    assert codes(r)[0] == "CASCADE_ARMED" and "CASCADE_ESCALATED" in codes(r)
    assert "mean log-prob" in r.attempts[0].detail
    msgs = list(c.stream("Write a random string of 12 letters.", max_tokens=32, timeout=300))
    text = "".join(m.delta for m in msgs if m.WhichOneof("event") == "delta")
    assert text == "remote answer"  # the held-back local tokens never reached the client
    assert any(m.WhichOneof("event") == "notice" and m.notice.code == "CASCADE_ESCALATED" for m in msgs)


def test_cascade_keeps_a_confident_local_answer(daemon_factory, lan, default_model_path):
    d = daemon_factory(cascade_config(lan, min_mean=-50))
    msgs = list(d.client().stream("Count from 1 to 10.", max_tokens=32, timeout=300))
    final = msgs[-1].final
    assert final.served_by.tier == pb.TIER_LOCAL and codes(final) == ["CASCADE_ARMED", "CASCADE_CONFIDENT"]
    assert "the local model was confident: mean log-prob" in final.trace[1].detail
    assert "".join(m.delta for m in msgs if m.WhichOneof("event") == "delta") == final.text
    assert lan.requests == []


@pytest.mark.parametrize("first_sentence", [True, False])
def test_cascade_judges_the_first_sentence_not_the_chatter_after_it(daemon_factory, lan, first_sentence):
    # The scripted local answer is sure of its first sentence (6 tokens at -0.1) and unsure
    # of the elaboration after it (-3): the gate that stops at the first sentence keeps the
    # answer and streams it at once; the fixed 16-token window averages in the chatter
    # (mean -1.91 < -1.0) and escalates.
    reply = "The capital of Peru is Lima. It is a city of many old streets by the sea and more to see."
    cfg = fake_config(reply=reply, extra=f"""
fake_logprob = [-0.1, -0.1, -0.1, -0.1, -0.1, -0.1, -3.0]

[routing]
strategy = "smart"
classifier = true     # the cascade arms on a difficulty score: every score is in the band [0, 1)
device_load = false
difficulty_threshold = 1.0
cascade_band = 0.0
cascade_min_mean_logprob = -1.0
cascade_min_token_logprob = -100
cascade_holdback_tokens = 16
cascade_first_sentence = {str(first_sentence).lower()}

[[onprem]]
name = "lan"
base_url = "{lan.base_url}"
model = "m"
""")
    d = daemon_factory(cfg)
    msgs = list(d.client().stream("What is the capital of Peru?", timeout=30))
    final = msgs[-1].final
    deltas = [m.delta for m in msgs if m.WhichOneof("event") == "delta"]
    if first_sentence:
        assert final.served_by.backend == "local" and final.text == reply and lan.requests == []
        assert codes(final) == ["CASCADE_ARMED", "CASCADE_CONFIDENT"]
        assert final.trace[1].detail == ("the local model was confident: mean log-prob -0.10 (min -1.0), lowest token "
                                         "-0.10 (min -100.0) over the first sentence (6 tokens)")
        assert deltas[0] == "The capital of Peru is Lima."  # held back only until the sentence ended
    else:
        assert final.served_by.backend == "lan" and "".join(deltas) == "remote answer", (codes(final), final.attempts)
        assert [(a.backend, a.outcome) for a in final.attempts] == [("local", "low_confidence"), ("lan", "ok")]
        assert final.attempts[0].detail == ("not confident: mean log-prob -1.91 (min -1.0), lowest token -3.00 "
                                            "(min -100.0) over the first 16 tokens")
        assert "CASCADE_CONFIDENT" not in codes(final)


def test_a_cpu_burning_neighbour_does_not_send_requests_remote(daemon_factory, lan):
    """Two processes burn both cores; the fake model keeps its pace (its tokens are timed),
    so nothing is sent remote for load: CPU matters only when it slows the local model."""
    import subprocess
    import sys

    d = daemon_factory(smart_config(lan, token_delay_ms=5).replace("device_load = false", "device_load = true"))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        results = [d.client().ask("hello", timeout=30) for _ in range(10)]
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert all(r.served_by.backend == "local" for r in results), [codes(r) for r in results]
    assert not any(c.startswith("LOAD_") for r in results for c in codes(r))