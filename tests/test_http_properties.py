"""Property tests for the HTTP front door: no body makes it answer 5xx, hang or fall over.

Hostile JSON (and non-JSON) bodies go to POST /v1/chat/completions of one live daemon.
Every answer must be 200 (then a well-formed completion or SSE stream), or an OpenAI
error body with 400, 404 or 413 naming what was wrong (or 503 for CLOUD_ONLY, since
this daemon has no remote tier); afterwards the daemon is alive,
SERVING, logged no internal error and answers a normal request."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import SERVING, DaemonProcess, fake_config, health_status, start_daemon

EXAMPLES = 400

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                     st.text(max_size=40))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                     max_leaves=12)
_roles = st.one_of(st.sampled_from(["user", "system", "assistant", "developer", "tool"]), st.text(max_size=12), _scalars)
_content = st.one_of(st.text(max_size=200), _scalars,
                     st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", ""])},
                                                    optional={"text": st.one_of(st.text(max_size=50), _scalars)}),
                              max_size=3))
_message = st.one_of(st.fixed_dictionaries({"role": _roles, "content": _content}), _json)
_fields = {
    "model": st.one_of(st.sampled_from(["auto", "edge", "", "fake", "gpt-4o"]), _scalars),
    "messages": st.one_of(st.lists(_message, max_size=4), _json),
    "max_tokens": st.one_of(st.integers(-5, 3000), st.integers(-2**40, 2**40), _scalars),
    "temperature": st.one_of(st.floats(-1, 3), _scalars),
    "top_p": st.one_of(st.floats(-1, 2), _scalars),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=300), max_size=10), _scalars),
    "seed": st.one_of(st.integers(-1, 2**64), _scalars),
    "stream": st.one_of(st.booleans(), _scalars),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), _json),
    "n": st.one_of(st.integers(0, 3), _scalars),
    "edge": st.one_of(st.fixed_dictionaries({}, optional={
        "preference": st.sampled_from(["auto", "local_only", "cloud_only", "moon"]),
        "max_latency_ms": st.integers(-10, 2**40), "max_cost_usd": st.floats(-1, 10)}), _json),
    "tools": st.one_of(st.none(), st.lists(_json, max_size=2)),
}
_valid = {
    "model": st.sampled_from(["auto", "edge", "", "fake", "gpt-4o"]),
    "max_tokens": st.integers(1, 64),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "stop": st.lists(st.text(min_size=1, max_size=5), max_size=2),
    "seed": st.integers(0, 2**32 - 1),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "edge": st.fixed_dictionaries({}, optional={"preference": st.sampled_from(["auto", "local_only"]),
                                                "max_latency_ms": st.integers(0, 10_000)}),
}


@st.composite
def mostly_valid(draw: st.DrawFn) -> bytes:
    """A valid request with 0-2 of its fields replaced by hostile values."""
    body = {"messages": [{"role": "user", "content": draw(st.text(min_size=1, max_size=50))}]}
    body.update(draw(st.fixed_dictionaries({}, optional=_valid)))
    for key in draw(st.lists(st.sampled_from(sorted(_fields)), max_size=2, unique=True)):
        body[key] = draw(_fields[key])
    return json.dumps(body).encode()


bodies = st.one_of(
    mostly_valid(),
    st.dictionaries(st.sampled_from(sorted(_fields)), _json, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=300),
    st.just(b'{"messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}'),  # over max_body_bytes
    st.just(b'{"messages": [{"role": "user", "content": "' + b"x" * 60_000 + b'"}], "max_tokens": 1}'),
    st.just(b"[" * 5000),
)


@pytest.fixture(scope="module")
def http_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    cfg = fake_config(reply="ok", extra='[http]\nlisten = "127.0.0.1:0"\nmax_body_bytes = 65536\n')
    d = start_daemon(tmp_path_factory.mktemp("http-props"), cfg, name="http")
    yield d
    d.stop()


def test_any_body_gets_a_2xx_or_a_named_4xx_and_the_daemon_survives(http_daemon):
    url = f"http://{http_daemon.addresses['http']}/v1/chat/completions"
    seen: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(body=bodies)
    def check(body: bytes) -> None:
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
        seen[r.status_code] += 1
        if r.status_code == 200:
            if r.headers["content-type"].startswith("text/event-stream"):
                events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
                assert events[-1] == "[DONE]" or "error" in json.loads(events[-1]), r.text[-300:]
            else:
                assert r.json()["choices"][0]["message"]["content"] == "ok"
            return
        err = r.json()["error"]
        if r.status_code == 503:  # the one refusal that is not the body's fault: no remote tier here
            assert err["message"].startswith("routing.preference is CLOUD_ONLY"), err
            return
        assert r.status_code in (400, 404, 413), (r.status_code, r.text[:300], body[:200])
        assert err["message"] and err["type"] == "invalid_request_error"
        if r.status_code == 400:
            field = err["param"] or err["message"].split(":")[0]
            assert field and not field.startswith("internal"), err

    check()
    assert seen[200] >= 10 and seen[400] >= 10 and seen[404] >= 1 and seen[413] >= 1, seen
    assert http_daemon.proc.poll() is None
    assert health_status(http_daemon.target) == SERVING
    assert "internal error" not in http_daemon.logs()
    ok = httpx.post(url, json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "ok"
