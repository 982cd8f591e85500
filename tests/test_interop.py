"""Interop with a server we did not write: llama-cpp-python's own OpenAI-compatible
server, running the real SmolLM2 model on loopback, as edge's on-prem tier."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from edge.v1 import router_pb2 as pb

from .conftest import fake_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(default_model_path, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"llama_cpp.server did not start: {open(log.name).read()}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(30)


def onprem(llama_server: str, routing: str = "") -> str:
    """The llama_cpp.server as the on-prem tier, walked first (strategy chain)."""
    return f"""
[routing]
strategy = "chain"
{routing}

[[onprem]]
name = "llama-server"
base_url = "{llama_server}"
model = "smollm2"
first_byte_timeout_s = 60
total_timeout_s = 120
"""


def test_llama_cpp_server_as_the_onprem_tier(daemon_factory, llama_server):
    d = daemon_factory(fake_config(reply="local fallback") + onprem(llama_server))
    c = d.client()
    r = c.ask("What is the capital of France?", max_tokens=24, temperature=0, timeout=120)
    assert r.served_by.backend == "llama-server" and r.served_by.tier == pb.TIER_ONPREM
    assert r.text and r.text != "local fallback"
    assert 0 < r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 5
    # llama_cpp.server leaves usage out of its streams: edge estimates it and says so.
    assert "USAGE_ESTIMATED" in [x.code for x in r.trace]
    msgs = list(c.stream("Write a very long story about a dragon.", max_tokens=40, temperature=0, timeout=120))
    deltas = [m.delta for m in msgs if m.WhichOneof("event") == "delta"]
    final = msgs[-1].final
    assert len(deltas) > 5 and "".join(deltas) == final.text
    assert final.served_by.backend == "llama-server" and final.finish_reason == "length"
    assert [(a.backend, a.outcome) for a in final.attempts] == [("llama-server", "ok")]


def test_an_estimated_prompt_counts_the_chat_template(daemon_factory, llama_server):
    """llama_cpp.server reports no usage in its streams. The estimate used to be 4
    characters a token (7 for this question, where the server counts the chat template's
    system prompt and role markers too); it is now the local model's own template and
    tokenizer, which this server shares. The server's unary answer gives the true count."""
    question = "What is the capital of France?"
    d = daemon_factory(onprem(llama_server, "classifier = false\nprofile_on_start = false"))  # the real local model
    r = d.client().ask(question, max_tokens=8, temperature=0, timeout=120)
    assert r.served_by.backend == "llama-server" and "USAGE_ESTIMATED" in [x.code for x in r.trace]
    truth = httpx.post(f"{llama_server}/chat/completions", timeout=120, json={
        "model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": question}]}).json()
    reported = truth["usage"]["prompt_tokens"]
    assert len(question) // 4 < reported / 2  # what the old estimate missed
    assert abs(r.usage.prompt_tokens - reported) <= 0.1 * reported, (r.usage.prompt_tokens, reported)
