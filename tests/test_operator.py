"""What the operator sees: Prometheus metrics, the status view, per-request JSON logs
and OpenTelemetry spans, read from a real daemon serving real traffic."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.testing.providers import ProviderServer

from .conftest import fake_config

SECRET_PROMPT = "my private diary entry number 77"


@pytest.fixture
def cloud(loopback) -> ProviderServer:
    return loopback(reply="cloud says hi")


def operator_config(cloud: ProviderServer, extra: str = "") -> str:
    return fake_config(reply="local says hi", extra=f"""
[routing]
strategy = "chain"

[metrics]
listen = "127.0.0.1:0"

[cost]
daily_budget_usd = 5.0

[[cost.prices]]
provider = "openai"
model = "test-model"
input_per_mtok = 1000.0
output_per_mtok = 2000.0

[[cloud]]
name = "cloud"
base_url = "{cloud.base_url}"
model = "test-model"
{extra}
""")


def scrape(d) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    text = httpx.get(f"http://{d.addresses['metrics']}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def sample(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_latency_tokens_cost_and_live_state(daemon_factory, cloud):
    d = daemon_factory(operator_config(cloud))
    c = d.client()
    remote = c.ask("hello", timeout=10)
    local = c.ask("hello", preference="local_only", timeout=10)
    streamed = list(c.stream("hello", preference="local_only", timeout=10))[-1].final
    with pytest.raises(grpc.RpcError):
        c.ask("hello", temperature=9, timeout=10)
    assert remote.served_by.backend == "cloud" and local.served_by.backend == "local"

    m = scrape(d)
    assert sample(m, "edge_requests_total", tier="cloud", backend="cloud", outcome="ok") == 1
    assert sample(m, "edge_requests_total", tier="local", backend="local", outcome="ok") == 2
    assert sample(m, "edge_requests_total", tier="", backend="", outcome="INVALID_ARGUMENT") == 1
    assert sample(m, "edge_request_duration_seconds_count", tier="local") == 2
    assert sample(m, "edge_time_to_first_token_seconds_count", tier="cloud") == 1
    assert sample(m, "edge_tokens_total", direction="output", tier="cloud") == remote.usage.completion_tokens
    assert sample(m, "edge_tokens_total", direction="input", tier="local") == 2 * local.usage.prompt_tokens
    assert sample(m, "edge_cost_usd_total", tier="cloud", backend="cloud") == pytest.approx(remote.cost_usd)
    assert sample(m, "edge_breaker_state", backend="cloud", state="closed") == 1
    assert sample(m, "edge_breaker_state", backend="cloud", state="open") == 0
    assert sample(m, "edge_network_state", state="up") == 1
    assert ("edge_queue_depth", (("model", "fake"),)) in m
    assert sample(m, "edge_serving") == 1
    assert sample(m, "edge_budget_limit_usd", period="day") == 5.0
    assert sample(m, "edge_budget_spent_usd", period="day") == pytest.approx(
        remote.cost_usd + local.cost_usd + streamed.cost_usd, rel=1e-6)
    assert sample(m, "edge_build_info", version=c.status(timeout=5).version) == 1

    # The provider goes away: the breaker opens and the escalation counters stay honest.
    cloud.stop()
    for _ in range(4):
        c.ask("hello", timeout=10)
    m = scrape(d)
    assert sample(m, "edge_breaker_state", backend="cloud", state="open") == 1
    assert sample(m, "edge_network_state", state="down") == 1
    assert sample(m, "edge_requests_total", tier="local", backend="local", outcome="ok") == 6


def test_metrics_are_off_unless_configured(daemon_factory):
    d = daemon_factory(fake_config(reply="ok"))
    assert "metrics" not in d.addresses


def test_status_shows_hardware_budget_doors_and_models(daemon_factory, cloud):
    d = daemon_factory(operator_config(cloud))
    c = d.client()
    r = c.ask("hello", timeout=10)
    deadline = time.monotonic() + 30
    status = c.status(timeout=5)
    while not status.hardware.fingerprint and time.monotonic() < deadline:  # probed in the background
        time.sleep(0.1)
        status = c.status(timeout=5)
    assert len(status.hardware.fingerprint) == 16 and status.hardware.logical_cores >= 1
    assert status.hardware.ram_total_bytes > 0
    day = {b.period: b for b in status.budgets}["day"]
    assert day.limit_usd == 5.0 and day.spent_usd == pytest.approx(r.cost_usd, rel=1e-6)
    assert day.remaining_usd == pytest.approx(5.0 - r.cost_usd, rel=1e-6)
    assert status.pii_guard == "keep_local" and status.tls == "off" and not status.auth_required
    assert status.uptime_s > 0 and status.version

    out = subprocess.run([sys.executable, "-m", "edge", "status", "--target", d.target], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"fingerprint {status.hardware.fingerprint}" in out.stdout
    assert "spent this day: $" in out.stdout and "of $5.0000" in out.stdout
    assert "doors: auth off, TLS off, rate limit off, PII guard keep_local" in out.stdout


def _request_lines(d) -> list[dict]:  # type: ignore[no-untyped-def]
    lines = [json.loads(line) for line in d.logs().splitlines() if line.startswith("{")]
    return [x for x in lines if x.get("msg") in ("request served", "request failed")]


def test_one_json_log_line_per_request_without_content_by_default(daemon_factory):
    d = daemon_factory(fake_config(reply="the answer text"))
    d.client().ask(SECRET_PROMPT, request_id="req-log-1", timeout=10)
    with pytest.raises(grpc.RpcError):
        d.client().ask(SECRET_PROMPT, request_id="req-log-2", temperature=5, timeout=10)
    deadline = time.monotonic() + 10
    while len(_request_lines(d)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    served, failed = _request_lines(d)
    assert served["request_id"] == "req-log-1" and served["tier"] == "TIER_LOCAL" and served["reasons"]
    assert failed["request_id"] == "req-log-2" and failed["status"] == "INVALID_ARGUMENT"
    assert SECRET_PROMPT not in d.logs() and "the answer text" not in d.logs()


def test_log_content_puts_prompt_and_answer_in_the_line_when_the_operator_asks(daemon_factory):
    d = daemon_factory(fake_config(reply="the answer text").replace("[server]", "log_content = true\n[server]"))
    d.client().ask(SECRET_PROMPT, request_id="req-log-3", timeout=10)
    deadline = time.monotonic() + 10
    while not _request_lines(d) and time.monotonic() < deadline:
        time.sleep(0.05)
    (served,) = _request_lines(d)
    assert served["messages"] == [{"role": "user", "content": SECRET_PROMPT}]
    assert served["answer"] == "the answer text"


def test_opentelemetry_spans_for_request_decision_and_each_attempt(daemon_factory, cloud, tmp_path):
    spans_file = tmp_path / "spans.jsonl"
    cfg = operator_config(cloud, extra=f'\n[tracing]\nenabled = true\nexporter = "file"\nfile = "{spans_file}"\n')
    d = daemon_factory(cfg)
    d.client().ask("hello", request_id="traced-1", timeout=10)
    cloud.stop()
    d.client().ask("hello", request_id="traced-2", timeout=10)  # cloud fails, local answers
    d.stop()  # flushes the batch
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    roots = {s["attributes"]["edge.request_id"]: s for s in spans if s["name"] == "edge.request"}
    assert set(roots) == {"traced-1", "traced-2"}
    assert roots["traced-1"]["attributes"]["edge.backend"] == "cloud"
    assert roots["traced-2"]["attributes"]["edge.backend"] == "local"

    def children(root: dict, name: str) -> list[dict]:
        return [s for s in spans if s["name"] == name and s["parent_id"] == root["context"]["span_id"]
                and s["context"]["trace_id"] == root["context"]["trace_id"]]

    (decision,) = children(roots["traced-1"], "edge.decide")
    assert decision["attributes"]["edge.tiers"] == ["cloud", "local"]
    outcomes = [(s["attributes"]["edge.backend"], s["attributes"]["edge.outcome"])
                for s in children(roots["traced-2"], "edge.attempt")]
    assert outcomes[0] == ("cloud", "retryable_error") and outcomes[-1] == ("local", "ok")
