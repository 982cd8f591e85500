"""The OpenAI-compatible front door, driven by the real `openai` SDK against a real daemon.

Same path as gRPC: the answers carry the same routing trace, the same validation
names the same limits (with OpenAI's field names), the doors and the ledger are shared."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from edge.testing.providers import ProviderServer

from .conftest import TOKEN_A, fake_config, write_private


def http_config(reply: str = "hello from edge", extra: str = "") -> str:
    return fake_config(reply=reply, extra='[http]\nlisten = "127.0.0.1:0"\n' + extra)


def sdk(d, **kw) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"http://{d.addresses['http']}/v1", api_key=kw.pop("api_key", "unused"),
                         max_retries=0, timeout=10, **kw)


def test_openai_sdk_unary_and_streaming(daemon_factory):
    d = daemon_factory(http_config())
    client = sdk(d)
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Say hello"}],
                                       max_tokens=16, extra_headers={"X-Request-Id": "http-1"})
    assert r.choices[0].message.content == "hello from edge" and r.choices[0].finish_reason == "stop"
    assert r.id == "chatcmpl-http-1" and r.usage.completion_tokens == 3
    edge = r.model_extra["edge"]
    assert edge["served_by"] == {"tier": "local", "backend": "local", "model": "fake"}
    assert [x["code"] for x in edge["reasons"]] == ["LOCAL_ONLY_TIER"]

    chunks = list(client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "Say hello"}],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from edge"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["edge"]["served_by"]["tier"] == "local"
    assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].choices == []

    models = [m.id for m in client.models.list()]
    assert models == ["auto", "fake"]


def test_openai_sdk_sees_errors_in_openai_shape(daemon_factory):
    d = daemon_factory(http_config())
    client = sdk(d)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], temperature=9)
    assert bad.value.status_code == 400
    assert bad.value.body["param"] == "temperature" and "between 0 and 2" in bad.value.body["message"]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as image:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:,"}}]}])
    assert image.value.body["param"] == "messages[0].content[0].type"
    with pytest.raises(openai.BadRequestError) as role:
        client.chat.completions.create(model="auto", messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}])
    assert "messages[0].role" in role.value.body["message"]
    # Malformed JSON and wrong types are 400s naming the field, not 500s.
    base = f"http://{d.addresses['http']}/v1/chat/completions"
    r = httpx.post(base, content=b"{not json", timeout=5)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(base, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    # The daemon is fine afterwards.
    assert client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}]).choices


def test_routing_hints_travel_as_an_extension_field_or_headers(daemon_factory):
    cloud = ProviderServer("openai", reply="from the cloud").start()
    try:
        cfg = http_config(reply="from the device", extra=f"""
[routing]
strategy = "chain"

[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "test-model"
""")
        d = daemon_factory(cfg)
        client = sdk(d)
        msgs = [{"role": "user", "content": "hi"}]
        assert client.chat.completions.create(model="auto", messages=msgs).choices[0].message.content == "from the cloud"
        r = client.chat.completions.create(model="auto", messages=msgs, extra_body={"edge": {"preference": "local_only"}})
        assert r.choices[0].message.content == "from the device"
        assert "PREF_LOCAL_ONLY" in [x["code"] for x in r.model_extra["edge"]["reasons"]]
        r = client.chat.completions.create(model="auto", messages=msgs, extra_headers={"X-Edge-Preference": "local_only"})
        assert r.model_extra["edge"]["served_by"]["tier"] == "local"
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="auto", messages=msgs, extra_body={"edge": {"preference": "moon"}})
        assert bad.value.body["param"] == "edge.preference"
        assert len(cloud.requests) == 1
    finally:
        cloud.stop()


def test_a_blocked_remote_answer_is_content_filter_on_the_http_door(daemon_factory):
    """Both doors carry the provider's block: finish_reason content_filter, unary and streamed."""
    from edge.testing.providers import Fault

    cloud = ProviderServer("anthropic", reply="one two three four five").start()
    cloud.set_fault(Fault("blocked", after_events=2))
    try:
        d = daemon_factory(http_config(extra=f"""
[routing]
strategy = "chain"

[[cloud]]
name = "claude"
kind = "anthropic"
base_url = "{cloud.base_url}"
model = "test-model"
"""))
        client = sdk(d)
        msgs = [{"role": "user", "content": "hi"}]
        r = client.chat.completions.create(model="auto", messages=msgs)
        assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == "one two"
        chunks = list(client.chat.completions.create(model="auto", messages=msgs, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
            "content_filter"]
        final = d.client().ask("hi", timeout=10)  # the gRPC door
        assert final.finish_reason == "content_filter"
    finally:
        cloud.stop()


def test_http_shares_the_doors_and_the_ledger(daemon_factory, tmp_path):
    tokens = write_private(tmp_path / "tokens", f"sdk-app {TOKEN_A}\n")
    d = daemon_factory(http_config(extra=f'[security]\ntokens_file = "{tokens}"\nrate_limit_per_s = 0.2\n'
                                          'rate_limit_burst = 2\n'))
    with pytest.raises(openai.AuthenticationError):
        sdk(d, api_key="wrong-token-0123456789").chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}])
    client = sdk(d, api_key=TOKEN_A)
    for _ in range(2):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1
    status = httpx.get(f"http://{d.addresses['http']}/v1/models", timeout=5)
    assert status.status_code == 401  # model listing is behind the doors too
    d.stop()
    lines = [json.loads(x) for x in d.logs().splitlines() if x.startswith("{")]
    served = [x for x in lines if x.get("msg") == "request served"]
    assert len(served) == 2 and all(x["tier"] == "TIER_LOCAL" for x in served)


def test_streaming_client_that_goes_away_frees_the_model(daemon_factory):
    d = daemon_factory(http_config(reply="word " * 200, extra="").replace("fake_token_delay_ms = 0",
                                                                          "fake_token_delay_ms = 20"))
    client = sdk(d)
    stream = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "go"}], stream=True)
    next(iter(stream))
    stream.close()  # hang up mid-answer
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = d.client().status(timeout=5)
        if status.models[0].active == 0 and status.models[0].cancelled_total == 1:
            break
        time.sleep(0.05)
    assert status.models[0].active == 0 and status.models[0].cancelled_total == 1
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "again"}], max_tokens=4)
    assert r.choices[0].message.content


def test_unary_client_that_goes_away_frees_the_model(daemon_factory):
    # A unary answer nobody waits for is not generated to the end (as with gRPC cancel).
    d = daemon_factory(http_config(reply="word " * 200).replace("fake_token_delay_ms = 0", "fake_token_delay_ms = 20"))
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"http://{d.addresses['http']}/v1/chat/completions",
                   json={"model": "auto", "messages": [{"role": "user", "content": "go"}], "max_tokens": 200},
                   timeout=0.5)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = d.client().status(timeout=5).models[0]
        if m.active == 0 and m.cancelled_total == 1:
            break
        time.sleep(0.05)
    assert m.active == 0 and m.cancelled_total == 1 and m.tokens_generated_total < 150
    r = sdk(d).chat.completions.create(model="auto", messages=[{"role": "user", "content": "again"}], max_tokens=4)
    assert r.choices[0].message.content
