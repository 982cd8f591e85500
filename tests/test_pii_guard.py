"""The PII guard, end to end: what the loopback cloud provider actually received.

Each test sends requests holding an e-mail, a phone number, a Luhn-valid card, an
IBAN, an IP address and an API key through a real daemon whose chain prefers the
cloud, then inspects every recorded provider request body for the raw values."""

from __future__ import annotations

import json

import grpc
import pytest

from edge.testing.providers import ProviderServer

from .conftest import fake_config

VALUES = {
    "email": "jane.doe@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ip": "10.20.30.40",
    "secret": "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
}
PROMPT = ("Please draft a reply to " + VALUES["email"] + " (call " + VALUES["phone"] + "), confirming the refund to card "
          + VALUES["card"] + " or IBAN " + VALUES["iban"] + "; the server at " + VALUES["ip"]
          + " uses key " + VALUES["secret"] + ".")


@pytest.fixture
def cloud(loopback) -> ProviderServer:
    return loopback(reply="Drafted.")


def guard_config(cloud: ProviderServer, mode: str | None) -> str:
    privacy = f'\n[privacy]\npii = "{mode}"\n' if mode else ""
    return fake_config(reply="local draft", extra=f"""
[routing]
strategy = "chain"
{privacy}
[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "test-model"
""")


def received(cloud: ProviderServer) -> str:
    return "\n".join(json.dumps(r.body) for r in cloud.requests if r.body is not None)


def test_default_keeps_requests_with_pii_on_the_device(daemon_factory, cloud):
    d = daemon_factory(guard_config(cloud, None))
    c = d.client()
    r = c.ask(PROMPT, timeout=10)
    assert r.served_by.backend == "local" and r.text == "local draft" and not r.degraded
    reason = next(x for x in r.trace if x.code == "PII_KEEP_LOCAL")
    assert "e-mail address" in reason.detail and "payment card number" in reason.detail
    assert [a.backend for a in r.attempts] == ["local"]
    for kind, value in VALUES.items():  # each kind alone is enough
        single = c.ask(f"Is {value} fine?", timeout=10)
        assert single.served_by.backend == "local", kind
    assert cloud.requests == []
    with pytest.raises(grpc.RpcError) as info:
        c.ask(PROMPT, preference="cloud_only", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "keep_local" in info.value.details()
    assert cloud.requests == []
    # Without personal data the same daemon does use the cloud: the guard is not simply "always local".
    assert c.ask("Draft a polite refund confirmation.", timeout=10).served_by.backend == "cloud"
    assert len(cloud.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_redact_sends_placeholders_never_the_values(daemon_factory, cloud, stream):
    d = daemon_factory(guard_config(cloud, "redact"))
    c = d.client()
    if stream:
        r = list(c.stream(PROMPT, system="Contact " + VALUES["email"] + " only.", timeout=10))[-1].final
    else:
        r = c.ask(PROMPT, system="Contact " + VALUES["email"] + " only.", timeout=10)
    assert r.served_by.backend == "cloud" and r.text == "Drafted."
    reason = next(x for x in r.trace if x.code == "PII_REDACTED")
    assert "an IBAN" in reason.detail
    body = received(cloud)
    assert body, "the provider received nothing"
    for kind, value in VALUES.items():
        assert value not in body, kind
        assert value.replace(" ", "") not in body, kind
    # The same address in two messages is one placeholder, so the model can still follow the text.
    assert body.count("[EMAIL_1]") == 2 and "[CARD_1]" in body and "[IBAN_1]" in body and "[SECRET_1]" in body


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_redacted_answer_gets_the_values_back(daemon_factory, loopback, stream):
    # The remote model only ever saw placeholders, and answers with them; the client
    # reads its own values.
    cloud = loopback(reply="I wrote to [EMAIL_1] about the refund to [CARD_1] and [IBAN_1].")
    d = daemon_factory(guard_config(cloud, "redact"))
    c = d.client()
    if stream:
        msgs = list(c.stream(PROMPT, timeout=10))
        text = "".join(m.delta for m in msgs if m.WhichOneof("event") == "delta")
        assert text == msgs[-1].final.text
    else:
        text = c.ask(PROMPT, timeout=10).text
    assert text == (f"I wrote to {VALUES['email']} about the refund to {VALUES['card']} and {VALUES['iban']}.")
    body = received(cloud)
    assert all(value not in body for value in VALUES.values())


def test_off_sends_everything_as_is(daemon_factory, cloud):
    # The control: with the guard off the provider does see the values, so the tests above can fail.
    d = daemon_factory(guard_config(cloud, "off"))
    r = d.client().ask(PROMPT, timeout=10)
    assert r.served_by.backend == "cloud"
    body = received(cloud)
    assert all(value in body for value in VALUES.values())
    assert not any(x.code.startswith("PII_") for x in r.trace)


def test_guard_kinds_are_configurable(daemon_factory, cloud):
    cfg = guard_config(cloud, "keep_local").replace('pii = "keep_local"', 'pii = "keep_local"\npii_kinds = ["card"]')
    d = daemon_factory(cfg)
    assert d.client().ask("Mail " + VALUES["email"], timeout=10).served_by.backend == "cloud"
    assert d.client().ask("Card " + VALUES["card"], timeout=10).served_by.backend == "local"
