"""The proto is the contract: a Node.js client (@grpc/grpc-js + @grpc/proto-loader loading
protos/edge/v1/router.proto at run time, no generated code) talks to a real daemon.

clients/node/edge_client.js is both the README's example and the program driven here.
Skips only where `node` is absent; with node present, a missing npm or a failing
`npm ci` is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT, fake_config

NODE_DIR = ROOT / "clients" / "node"
CLIENT = NODE_DIR / "edge_client.js"
TOKEN = "n0de-client-t0ken-0123456789abcdef"  # 34 characters; the daemon wants 16 or more
REPLY = "hello from edge"

pytestmark = pytest.mark.timeout(420)  # the first test may include `npm ci`


@pytest.fixture(scope="session")
def node() -> str:
    """`node` with clients/node/node_modules installed from the lockfile (`npm ci` when stale)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (no `node` on PATH): the Node.js client test needs it")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"  # written by npm at each install
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"`node` is at {node} but `npm` is not on PATH: cannot install clients/node's "
                        "packages (install npm, e.g. `apt-get install npm`, or run `scripts/setup.sh --dev`)")
        try:
            r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                               text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"`npm ci` in {NODE_DIR} did not finish in 300 s:\n{e.stdout}\n{e.stderr}")
        if r.returncode != 0:
            pytest.fail(f"`npm ci` in {NODE_DIR} failed with exit status {r.returncode} (no registry access? "
                        f"lockfile out of step with package.json?):\n{r.stdout}\n{r.stderr}")
    return node


def run_client(node: str, mode: str, target: str, token: str | None = None) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_TOKEN", "EDGE_TARGET", "EDGE_PROTO_DIR")}
    if token is not None:
        env["EDGE_TOKEN"] = token
    env["EDGE_TIMEOUT_MS"] = "20000"
    r = subprocess.run([node, str(CLIENT), mode, target], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`node edge_client.js {mode}` printed no JSON object (exit {r.returncode}):\n"
                    f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r.returncode, out, r.stderr


def assert_selftest(out: dict) -> None:
    assert "error" not in out, out["error"]
    assert out["health"] == "SERVING" and out["health_router"] == "SERVING"

    unary = out["unary"]
    assert unary["text"] == REPLY and unary["finish_reason"] == "stop"
    # enums: String renders enums by name, keepCase keeps the .proto's snake_case names
    assert unary["served_by"] == {"tier": "TIER_LOCAL", "backend": "local", "model": "fake"}
    assert [r["code"] for r in unary["trace"]] == ["LOCAL_ONLY_TIER"] and unary["trace"][0]["detail"]
    assert unary["usage"]["completion_tokens"] > 0 and unary["usage"]["prompt_tokens"] > 0
    assert unary["request_id"] and unary["degraded"] is False

    stream = out["stream"]
    # oneofs: true names the member that is set; only that member is present
    assert stream["events"][-1] == "final" and stream["events"].count("final") == 1
    assert stream["deltas"] and set(stream["events"][:-1]) == {"delta"} and stream["notices"] == []
    assert "".join(stream["deltas"]) == stream["final"]["text"] == REPLY
    assert stream["final"]["served_by"]["tier"] == "TIER_LOCAL" and stream["final"]["trace"]
    assert stream["final"]["request_id"] != unary["request_id"]

    assert out["models"] == [{"name": "fake", "tier": "TIER_LOCAL", "backend": "fake", "state": "ready",
                              "is_default": True, "size_bytes": "0"}]  # longs: String -> uint64 as a string
    status = out["status"]
    assert status["state"] == "serving" and status["version"] and status["default_model"] == "fake"
    assert status["requests_total"] == ["2"]  # the unary and the streamed request so far

    bad = out["invalid"]
    assert bad["code"] == "INVALID_ARGUMENT" and bad["code_number"] == 3, bad
    assert "params.temperature" in bad["details"] and "between 0 and 2" in bad["details"], bad


def test_node_client_drives_the_daemon_unary_stream_status_and_health(node, daemon_factory):
    d = daemon_factory(fake_config(reply=REPLY))
    rc, out, stderr = run_client(node, "selftest", d.target)
    assert rc == 0, (out, stderr)
    assert out["token_sent"] is False and out["status"]["auth_required"] is False
    assert_selftest(out)


def test_node_client_sends_the_bearer_token_and_health_needs_none(node, daemon_factory, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"nodeclient {TOKEN}\n", encoding="utf-8")
    tokens.chmod(0o600)
    d = daemon_factory(fake_config(reply=REPLY, extra=f'[security]\ntokens_file = "{tokens}"\n'))

    rc, out, stderr = run_client(node, "selftest", d.target, token=TOKEN)
    assert rc == 0, (out, stderr)
    assert out["token_sent"] is True and out["status"]["auth_required"] is True
    assert_selftest(out)

    # No token: the health service still answers, the router refuses.
    rc, out, stderr = run_client(node, "healthonly", d.target)
    assert rc == 0, (out, stderr)
    assert out == {"target": d.target, "token_sent": False, "health": "SERVING"}

    rc, out, stderr = run_client(node, "selftest", d.target)
    assert rc == 1, (out, stderr)
    assert out["health"] == "SERVING" and "unary" not in out
    err = out["error"]
    assert (err["rpc"], err["code"], err["code_number"]) == ("Generate", "UNAUTHENTICATED", 16), err
    assert "bearer token missing" in err["details"]
    assert "Generate failed: UNAUTHENTICATED (16)" in stderr

    rc, out, stderr = run_client(node, "selftest", d.target, token="x" * len(TOKEN))
    assert rc == 1 and out["error"]["code"] == "UNAUTHENTICATED", (out, stderr)
    assert "not valid" in out["error"]["details"]


def test_shipped_health_proto_matches_what_the_daemon_serves(tmp_path):
    """protos/grpc/health/v1/health.proto (loaded by the Node client) agrees with grpcio-health-checking's
    grpc.health.v1: the same messages, fields, enum values and methods (it may serve more)."""
    from google.protobuf import descriptor_pb2
    from grpc_health.v1 import health_pb2

    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", f"--descriptor_set_out={tmp_path}/h.pb",
                    "protos/grpc/health/v1/health.proto"], cwd=ROOT, check=True)
    ours = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "h.pb").read_bytes()).file[0]
    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    assert ours.package == served.package == "grpc.health.v1"
    served_messages = {m.name: m for m in served.message_type}
    for m in ours.message_type:
        for f in m.field:
            f.ClearField("json_name")
        assert m == served_messages[m.name], m.name
    (svc,) = ours.service
    served_methods = {x.name: x for x in next(s for s in served.service if s.name == svc.name).method}
    assert [x.name for x in svc.method] == ["Check", "Watch"]
    for x in svc.method:
        assert x == served_methods[x.name], x.name
