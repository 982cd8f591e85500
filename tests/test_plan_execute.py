"""Plan and execute, end to end: a real daemon on an ephemeral port, the loopback provider
as planner and capable tier, the fake backend (an echo: each local step answers with its
own ask) as the local model. Asserts on what the client received, what the provider
received and what the ledger holds."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import grpc
import httpx
import pytest

from edge.pipeline.plan_format import PlanDefect, compound_questions, parse_plan, step_piece
from edge.testing.providers import Fault, ProviderServer

from .conftest import fake_config, wait_until

Q1, Q2, Q3 = "What is the capital of France?", "Prove that there are infinitely many primes.", "What colour is snow?"
COMPOUND = f"1. {Q1}\n2. {Q2}\n3. {Q3}"
PLAN = {"steps": [{"ask": Q1}, {"ask": Q2, "capable": True}, {"ask": Q3, "capable": False}]}
EMAIL = "jane.doe@example.org"
SYSTEM = "You answer briefly. The user is Ada Lovelace, of 12 Baker Street."


def is_planner(body: dict) -> bool:
    first = body["messages"][0]
    return first["role"] == "system" and first["content"].startswith("Split the user's request")


def replies(plan: dict | str | None = None):  # type: ignore[no-untyped-def]
    """The provider: the plan when asked to plan, else 'remote: ' and the question."""
    def reply(body: dict) -> str:
        if is_planner(body):
            if plan is None:  # split the numbered lines it received, as a planner would
                asks = [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", body["messages"][-1]["content"], re.M)]
                return json.dumps({"steps": [{"ask": a, "capable": "policy" in a} for a in asks]})
            return plan if isinstance(plan, str) else json.dumps(plan)
        return "remote: " + body["messages"][-1]["content"]
    return reply


# The real model instead of the fake one: the manifest's default, no shadow calls.
REAL_MODEL = '[server]\nlisten = "127.0.0.1:0"\n[calibration]\nshadow_rate = 0\n'


def plan_config(cloud: ProviderServer, *, plan: str = "", privacy: str = "", local: dict | None = None,
                onprem: ProviderServer | None = None, real_model: bool = False) -> str:
    lan = "" if onprem is None else f"""
[[onprem]]
name = "lan"
base_url = "{onprem.base_url}"
model = "test-model"
"""
    return (REAL_MODEL if real_model else fake_config(**(local or {}))) + f"""
[routing]
strategy = "smart"
classifier = false
device_load = false
profile_on_start = false
[resilience]
backoff_base_s = 0.01
[privacy]
pii = "{privacy or 'keep_local'}"
[plan]
{plan}
[[cost.prices]]
provider = "openai"
model = "test-model"
input_per_mtok = 1.0
output_per_mtok = 2.0
[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "test-model"
first_byte_timeout_s = 2
{lan}"""


def chats(srv: ProviderServer) -> list[dict]:
    return [r.body for r in srv.requests if r.body is not None and "messages" in r.body]


def codes(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.code for r in result.trace]


def ledger(d) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    path = Path(d.log_path).with_name(Path(d.log_path).stem + ".ledger.sqlite3")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT request_id, tier, backend, outcome, cost_usd, reasons FROM requests").fetchall()
    return {r[0]: r[1:] for r in rows}


# -- the format and the compound rule, alone ---------------------------------------------

def test_parse_plan_is_strict():
    assert [s.ask for s in parse_plan(json.dumps(PLAN), 5)] == [Q1, Q2, Q3]
    assert [s.capable for s in parse_plan("```json\n" + json.dumps(PLAN) + "\n```", 5)] == [False, True, False]
    bad = ["Sure! 1. France 2. primes", '{"steps": []}', '{"steps": [{"ask": ""}]}',
           '{"steps": [{"ask": "a", "capable": "yes"}]}', '{"steps": [{"ask": "a", "why": 1}]}',
           '{"steps": [{"ask": "a"}], "note": 1}', '[{"ask": "a"}]', 'Here: {"steps": [{"ask": "a"}]}']
    for text in bad:
        with pytest.raises(PlanDefect) as info:
            parse_plan(text, 5)
        assert info.value.code == "plan_malformed", text
    with pytest.raises(PlanDefect) as info:
        parse_plan(json.dumps({"steps": [{"ask": f"q{i}"} for i in range(6)]}), 5)
    assert info.value.code == "plan_too_long"


@pytest.mark.parametrize("text,n", [
    (COMPOUND, 3), ("What is 2+2? And the capital of Peru?", 2), ("- Why is the sky blue?\n- Who won?", 2),
    (Q1, 1), ("Which is larger, 3 or 5?", 1), ("Sort these:\n- pear\n- fig", 0),
    ("Is `a ? b : c` valid? ```x = y ? 1 : 2```", 1), ("See https://x.org/a?b=1 please", 0),
    ('He asked "why?" and left. Why?', 2),
])
def test_compound_rule(text, n):
    assert compound_questions(text) == n


# -- a plan with local and remote steps --------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_plan_runs_easy_steps_locally_and_hard_ones_remote(daemon_factory, loopback, stream):
    cloud = loopback(reply=replies(PLAN))
    d = daemon_factory(plan_config(cloud))
    c = d.client()
    if stream:
        msgs = list(c.stream(COMPOUND, system=SYSTEM, strategy="plan", request_id="p1", timeout=20))
        deltas = [m.delta for m in msgs if m.WhichOneof("event") == "delta"]
        notices = [m.notice.code for m in msgs if m.WhichOneof("event") == "notice"]
        r = msgs[-1].final
        assert notices == ["PLAN_MADE"]
        assert deltas == [step_piece(0, Q1), step_piece(1, "remote: " + Q2), step_piece(2, Q3)]
        assert "".join(deltas) == r.text
    else:
        r = c.ask(COMPOUND, system=SYSTEM, strategy="plan", request_id="p1", timeout=20)
    assert r.text == f"1. {Q1}\n2. remote: {Q2}\n3. {Q3}"
    assert r.served_by.backend == "plan" and not r.degraded
    assert codes(r) == ["PLAN_REQUESTED", "PLAN", "PLAN_STEP", "PLAN_STEP", "PLAN_STEP"]
    steps = [x.detail for x in r.trace if x.code == "PLAN_STEP"]
    # Steps the planner left unmarked are answered locally, their confidence checked (the
    # fake model reports none, so it stands); the one it marked capable went remote.
    assert steps[0].startswith("1: local/local [CASCADE_ARMED]") and steps[2].startswith("3: local/local")
    assert steps[1].startswith("2 (marked capable): cloud/cloud [DIFFICULTY_HIGH")
    # The provider planned once (from the last user message alone) and answered the one hard
    # step, which carried its own ask alone: the conversation's context stayed on the device,
    # where the local steps had it (the fake model counts a word a token, 2 more a message).
    bodies = chats(cloud)
    assert len(bodies) == 2 and is_planner(bodies[0]) and bodies[0]["messages"][-1]["content"] == COMPOUND
    assert SYSTEM not in json.dumps(bodies)
    assert [m["content"] for m in bodies[1]["messages"]] == [Q2]
    seen = len(SYSTEM.split()) + 2 + len(Q1.split()) + 2
    assert f"] {seen}+" in steps[0]
    # The ledger holds the planner call and each step, each with what it cost; the whole adds up.
    rows = ledger(d)
    assert set(rows) == {"p1/plan", "p1/1", "p1/2", "p1/3"}
    assert rows["p1/plan"][:3] == ("cloud", "cloud", "ok") and "PLANNER" in rows["p1/plan"][4]
    assert [rows[f"p1/{i}"][0] for i in (1, 2, 3)] == ["local", "cloud", "local"]
    assert rows["p1/plan"][3] > 0 and rows["p1/2"][3] > 0
    assert r.cost_usd == pytest.approx(sum(row[3] for row in rows.values()))
    assert f"${rows['p1/2'][3]:.6f}" in steps[1]


def test_the_http_door_takes_the_hint_and_streams_the_steps(daemon_factory, loopback):
    cloud = loopback(reply=replies(PLAN))
    d = daemon_factory(plan_config(cloud).replace("[server]", '[http]\nlisten = "127.0.0.1:0"\n[server]'))
    url = f"http://{d.addresses['http']}/v1/chat/completions"
    body = {"model": "auto", "messages": [{"role": "user", "content": COMPOUND}], "stream": True,
            "edge": {"strategy": "plan"}}
    with httpx.stream("POST", url, json=body, timeout=20) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert text == f"1. {Q1}\n2. remote: {Q2}\n3. {Q3}"
    assert events[1]["edge"]["notice"]["code"] == "PLAN_MADE"
    final = next(e["edge"] for e in events if "edge" in e and "reasons" in e["edge"])
    assert [x["code"] for x in final["reasons"]][:2] == ["PLAN_REQUESTED", "PLAN"]
    unary = httpx.post(url, json={"messages": [{"role": "user", "content": COMPOUND}]},
                       headers={"X-Edge-Strategy": "plan"}, timeout=20).json()
    assert unary["choices"][0]["message"]["content"] == text and unary["edge"]["served_by"]["backend"] == "plan"
    bad = httpx.post(url, json={"messages": [{"role": "user", "content": Q1}], "edge": {"strategy": "split"}},
                     timeout=20)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "edge.strategy"


def test_an_unknown_strategy_is_refused_by_name(daemon_factory, loopback):
    from edge.client import build_request

    d = daemon_factory(plan_config(loopback(reply=replies(PLAN))))
    req = build_request(Q1)
    req.routing.strategy = 9
    with pytest.raises(grpc.RpcError) as info:
        d.client().generate(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "routing.strategy" in info.value.details()


# -- privacy: the planner never sees a raw value, the local steps do ------------------------

PRIVATE = (f"My address is {EMAIL}.\n1. Write a one-line hello to {EMAIL}?\n"
           f"2. Which mail policy applies to {EMAIL}?")


def test_redacted_planner_sees_placeholders_and_local_steps_see_the_values(daemon_factory, loopback):
    cloud = loopback(reply=replies())  # splits what it received: its steps hold placeholders
    d = daemon_factory(plan_config(cloud, privacy="redact"))
    r = d.client().ask(PRIVATE, strategy="plan", timeout=20)
    received = "\n".join(json.dumps(b) for b in chats(cloud))
    assert EMAIL not in received and "[EMAIL_1]" in received
    planner = chats(cloud)[0]
    assert is_planner(planner) and "[EMAIL_1]" in planner["messages"][-1]["content"]
    # Step 1 ran on the device with the value put back (the echo shows what it saw);
    # step 2 (marked capable) went remote redacted, and its answer got the value back too.
    assert r.text == (f"1. Write a one-line hello to {EMAIL}?\n"
                      f"2. remote: Which mail policy applies to {EMAIL}?")
    assert "PII_REDACTED" in codes(r) and not r.degraded
    assert [m["content"] for m in chats(cloud)[1]["messages"]] == ["Which mail policy applies to [EMAIL_1]?"]


def test_private_context_never_leaves_the_device(daemon_factory, loopback):
    # privacy.pii = keep_local: the e-mail address earlier in the conversation keeps a direct
    # request local; a plan sends out only the last message and the hard step's ask.
    cloud = loopback(reply=replies(PLAN))
    d = daemon_factory(plan_config(cloud))
    convo = [("system", f"The user's e-mail is {EMAIL}."), ("user", "Hi"), ("assistant", "Hello!"), ("user", COMPOUND)]
    direct = d.client().ask(convo, timeout=20)
    assert direct.served_by.backend == "local" and "PII_KEEP_LOCAL" in codes(direct) and cloud.requests == []
    r = d.client().ask(convo, strategy="plan", timeout=20)
    assert r.text == f"1. {Q1}\n2. remote: {Q2}\n3. {Q3}" and not r.degraded
    received = "\n".join(json.dumps(b) for b in chats(cloud))
    assert len(chats(cloud)) == 2 and EMAIL not in received and "Hello!" not in received


def test_keep_local_never_calls_the_planner(daemon_factory, loopback):
    cloud = loopback(reply=replies(PLAN))
    d = daemon_factory(plan_config(cloud))  # privacy.pii = keep_local
    r = d.client().ask(PRIVATE, strategy="plan", timeout=20)
    assert cloud.requests == []
    assert codes(r)[:2] == ["PLAN_REQUESTED", "PLAN_KEPT_LOCAL"] and not r.degraded
    assert r.served_by.backend == "local" and r.text == PRIVATE


# -- no plan: answered directly, degraded, with the reason ----------------------------------

@pytest.mark.parametrize("case,code", [("malformed", "PLAN_MALFORMED"), ("too_long", "PLAN_TOO_LONG"),
                                       ("down", "PLANNER_UNAVAILABLE")])
def test_no_plan_falls_back_to_a_direct_answer(daemon_factory, loopback, case, code):
    reply = {"malformed": "Sure! First France, then primes.",
             "too_long": json.dumps({"steps": [{"ask": f"Question {i}?"} for i in range(6)]})}.get(case, "")
    cloud = loopback(reply=replies(reply or PLAN))
    d = daemon_factory(plan_config(cloud))
    if case == "down":
        cloud.set_fault(Fault("status", status=503))
    for stream in (False, True):
        if stream:
            r = list(d.client().stream(COMPOUND, strategy="plan", timeout=20))[-1].final
        else:
            r = d.client().ask(COMPOUND, strategy="plan", timeout=20)
        assert r.text == COMPOUND and r.served_by.backend == "local"  # the echo: answered whole, directly
        assert codes(r)[:2] == ["PLAN_REQUESTED", code] and r.degraded
    rows = ledger(d)
    planner_rows = [v for k, v in rows.items() if k.endswith("/plan")]
    assert len(planner_rows) == 2 and all(v[2] == ("UNAVAILABLE" if case == "down" else "ok") for v in planner_rows)


# -- a step that fails -------------------------------------------------------------------------

def test_a_rejected_remote_step_is_asked_again_of_the_local_model(daemon_factory, loopback):
    cloud = loopback(reply=replies(PLAN))
    lan = loopback(reply=replies())
    lan.set_fault(Fault("status", status=400))  # every request it gets: the hard step goes there first
    d = daemon_factory(plan_config(cloud, plan='planner = "cloud"', onprem=lan))
    r = d.client().ask(COMPOUND, strategy="plan", request_id="f1", timeout=20)
    assert r.text == f"1. {Q1}\n2. {Q2}\n3. {Q3}" and r.degraded
    step2 = [x.detail for x in r.trace if x.code == "PLAN_STEP"][1]
    assert step2.startswith("2 (marked capable): local/local") and "asked again of the local model" in step2
    assert len(chats(lan)) == 1 and len(chats(cloud)) == 1  # the planner only
    rows = ledger(d)
    assert rows["f1/2"][2] == "INVALID_ARGUMENT" and rows["f1/2+local"][:2] == ("local", "local")


def test_failed_steps_before_any_answer_fall_back_to_a_direct_answer(daemon_factory, loopback):
    # The planner put an address in the first step: under cloud_only and keep_local nothing
    # may answer that step (no local retry: the client asked for a remote tier), and nothing
    # has reached the client yet, so the request is answered directly.
    cloud = loopback(reply=replies({"steps": [{"ask": "Is 10.20.30.40 reachable?"}, {"ask": Q3}]}))
    d = daemon_factory(plan_config(cloud))
    r = d.client().ask(COMPOUND, strategy="plan", preference="cloud_only", timeout=20)
    assert codes(r)[:2] == ["PLAN_REQUESTED", "PLAN_STEP_FAILED"] and r.degraded
    assert "keep_local" in r.trace[1].detail
    assert r.text == "remote: " + COMPOUND and r.served_by.backend == "cloud"
    assert "10.20.30.40" not in json.dumps(chats(cloud))


def test_a_step_failing_after_the_client_has_answers_is_named_in_place(daemon_factory, loopback):
    long_ask = "Summarize " + "very " * 140 + "long text."
    cloud = loopback(reply=replies({"steps": [{"ask": Q1}, {"ask": long_ask, "capable": True}]}))
    lan = loopback(reply=replies())
    lan.set_fault(Fault("status", status=400))
    d = daemon_factory(plan_config(cloud, plan='planner = "cloud"', onprem=lan, local={"n_ctx": 128}))
    msgs = list(d.client().stream(Q1 + " And summarize it?", strategy="plan", timeout=20))
    r = msgs[-1].final
    assert r.text.startswith(f"1. {Q1}\n2. (no answer: ") and r.degraded
    assert "PLAN_STEP_FAILED" in codes(r)


# -- cancellation ----------------------------------------------------------------------------

def test_cancelling_mid_plan_stops_every_step(daemon_factory, loopback):
    cloud = loopback(reply=replies(PLAN))
    lan = loopback(reply=replies(), token_delay_s=0.3)  # the hard step streams slowly from here
    d = daemon_factory(plan_config(cloud, plan='planner = "cloud"', onprem=lan,
                                   local={"token_delay_ms": 300, "reply": "word " * 40}))
    c = d.client()
    call = c.stream(COMPOUND, strategy="plan", timeout=60)
    assert next(call).notice.code == "PLAN_MADE"
    # Step 1 generates on the device, step 2 streams from the provider, step 3 waits its turn.
    status = wait_until(lambda: (s := c.status()).models[0].active == 1 and len(chats(lan)) == 1 and s)
    assert [b.outstanding for b in status.backends if b.name == "lan"] == [1]
    call.cancel()
    status = wait_until(lambda: (s := c.status()).models[0].active == 0 and s.models[0].cancelled_total == 1
                        and all(b.outstanding == 0 for b in s.backends) and s)
    assert status.models[0].requests_total == 1  # step 3 never started
    time.sleep(1.0)
    after = c.status().models[0]
    assert len(chats(lan)) == 1 and len(chats(cloud)) == 1 and after.requests_total == 1
    assert after.tokens_generated_total < 20  # of 40: step 1 stopped at its next token


# -- auto: compound requests recognised ------------------------------------------------------

def test_auto_plans_what_the_rule_recognises(daemon_factory, loopback):
    cloud = loopback(reply=replies(PLAN))
    d = daemon_factory(plan_config(cloud, plan="auto = true"))
    c = d.client()
    r = c.ask(COMPOUND, timeout=20)
    assert codes(r)[0] == "PLAN_COMPOUND" and "3 questions" in r.trace[0].detail and r.served_by.backend == "plan"
    assert len(chats(cloud)) == 2
    simple = c.ask(Q1, timeout=20)
    direct = c.ask(COMPOUND, strategy="direct", timeout=20)
    assert simple.served_by.backend == direct.served_by.backend == "local" and len(chats(cloud)) == 2
    assert not any(x.code.startswith("PLAN") for x in [*simple.trace, *direct.trace])


# -- the real model ---------------------------------------------------------------------------

def test_plan_with_the_real_model(daemon_factory, loopback, default_model_path):
    plan = {"steps": [{"ask": "What is 2 plus 3?"}, {"ask": "What is the opposite of hot?"}]}
    cloud = loopback(reply=replies(plan))
    d = daemon_factory(plan_config(cloud, real_model=True))
    msgs = list(d.client().stream("What is 2 plus 3? What is the opposite of hot?", strategy="plan",
                                  max_tokens=16, temperature=0.0, timeout=60))
    r = msgs[-1].final
    deltas = [m.delta for m in msgs if m.WhichOneof("event") == "delta"]
    assert len(deltas) == 2 and deltas[0].startswith("1. ") and deltas[1].startswith("\n2. ")
    assert "".join(deltas) == r.text
    assert [x.detail.split(" ")[1] for x in r.trace if x.code == "PLAN_STEP"] == ["local/local", "local/local"]
    assert len(chats(cloud)) == 1  # the planner only: both steps answered on the device


def test_edge_ask_takes_the_strategy(daemon_factory, loopback):
    """The command line carries the hint: `edge ask --strategy plan` gets the joined answer."""
    import subprocess
    import sys

    cloud = loopback(reply=replies(PLAN))
    d = daemon_factory(plan_config(cloud))
    r = subprocess.run([sys.executable, "-m", "edge", "ask", COMPOUND, "--target", d.target, "--strategy", "plan",
                        "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["text"] == f"1. {Q1}\n2. remote: {Q2}\n3. {Q3}"
    assert out["served_by"]["backend"] == "plan"
    assert [t["code"] for t in out["trace"]][:2] == ["PLAN_REQUESTED", "PLAN"]
