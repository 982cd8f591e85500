"""Property tests (hypothesis): hostile input gets a clear answer, never a crash or a hang.

What is proven, for every generated input (derandomized, no example database, so
CI sees the same examples every run):

Requests, through one real `edge serve` daemon on the fake backend (per module):
  * every Generate / GenerateStream call carrying arbitrary field values (empty,
    huge, NUL-laden or unknown roles and contents, any int32 max_tokens, nan/inf/
    negative temperature and top_p, empty or oversized stop strings, any int64
    seed, unknown RoutePreference values, any double max_cost_usd, long
    request_id/model strings) completes well before its deadline;
  * its status is exactly what the wire contract and the configured limits
    promise, computed by an independent oracle (`expected_outcome`):
    INVALID_ARGUMENT whose details start with "<field>: " naming a field the
    request really violates; NOT_FOUND only for a non-empty unknown model;
    UNAVAILABLE only for CLOUD_ONLY (this daemon has no remote tier, as
    test_server.py documents); otherwise OK, never anything else;
  * an OK answer has served_by (local tier, model "fake"), str text equal to what
    the fake backend must produce, the caller's request_id, and a well-formed
    stream (deltas joined == final.text, exactly one final, last);
  * afterwards the process is alive, SERVING, holds no admission slot, logged no
    internal error, and answers a normal request.

Config loader (`edge.config.load_settings`), in-process:
  * any TOML document built from the schema's own sections and keys (read from the
    pydantic models, so new options are covered automatically) plus unknown ones,
    with values of every TOML type, in and out of bounds -> Settings or ConfigError;
    a ConfigError names the file and every problem by a key path rooted in the
    document ("server.listen: ...", "local.models.0.name: ...", "x.y: unknown key");
  * arbitrary bytes as the file (invalid UTF-8, broken TOML) -> Settings (when they
    happen to be valid TOML) or ConfigError naming the file;
  * EDGE_* overrides with arbitrary strings -> Settings (string options applied
    verbatim) or ConfigError naming the overridden key.

Three loader bugs these properties found (deep nesting, a directory as the file, a
backend-name clash reported at no key) have regression tests at the end of the file.
"""

from __future__ import annotations

import math
import signal
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from datetime import date
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edge.client import build_request
from edge.config import ENV_OVERRIDES, Settings, load_settings
from edge.errors import ConfigError
from edge.v1 import router_pb2 as pb
from edge.v1 import router_pb2_grpc as pb_grpc

from .conftest import SERVING, DaemonProcess, fake_config, health_status, start_daemon

T = TypeVar("T")

# ---------------------------------------------------------------------------------------
# Shared hypothesis settings
# ---------------------------------------------------------------------------------------

_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": False,
    # The only function-scoped fixture involved is conftest's autouse env scrub, which is
    # safe to share between examples; large strings are generated on purpose.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                              HealthCheck.data_too_large, HealthCheck.large_base_example],
}
REQUEST_EXAMPLES = 2000
CONFIG_EXAMPLES = 1000
BYTES_EXAMPLES = 400
ENV_EXAMPLES = 500


def _mostly(usual: st.SearchStrategy[T], rare: st.SearchStrategy[T], one_in: int = 4) -> st.SearchStrategy[T]:
    """`usual`, except one draw in `one_in` comes from `rare`."""
    return st.integers(0, one_in - 1).flatmap(lambda n: rare if n == 0 else usual)


def _repeated_text(min_len: int, max_len: int) -> st.SearchStrategy[str]:
    """Long strings (cheap to generate): a short arbitrary pattern repeated to a drawn length."""
    return st.tuples(st.text(min_size=1, max_size=3), st.integers(min_len, max_len)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]])


# ---------------------------------------------------------------------------------------
# 1. Requests through the real daemon
# ---------------------------------------------------------------------------------------

# The module daemon's limits: small, so that "a bit beyond" them is cheap to send.
N_CTX = 512
MAX_CONTENT_BYTES = 2048
MAX_MESSAGES = 8
MAX_TOKENS_CAP = 64
DEFAULT_MAX_TOKENS = 16
MAX_STOP = 3
MAX_STOP_BYTES = 256       # edge.validation._MAX_STOP_BYTES
MAX_ID_CHARS = 128         # edge.validation._MAX_REQUEST_ID / _MAX_MODEL_NAME
ROLES = ("system", "user", "assistant")   # router.proto, ChatMessage.role
MODEL = "fake"
REPLY = "ok"
CALL_TIMEOUT_S = 5.0

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)

_ANY_ROLE = st.one_of(st.sampled_from(ROLES), st.sampled_from(["User", "user ", "", "tool", "user\x00", "système"]),
                      st.text(max_size=40))
_ANY_CONTENT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "\x00", "\x00\x00 \x00", "\u2028", "\U0001f600" * 3]),
    _repeated_text(0, MAX_CONTENT_BYTES + 512),                                    # around the byte limit
    st.integers(MAX_CONTENT_BYTES - 2, MAX_CONTENT_BYTES + 2).map(lambda n: "x" * n),  # exactly at it
    st.integers(N_CTX - 12, N_CTX + 4).map(lambda n: "w " * n),                     # around the context
)
_GOOD_MESSAGES = st.tuples(
    st.lists(st.builds(pb.ChatMessage, role=st.sampled_from(ROLES), content=st.text(min_size=1, max_size=30)),
             max_size=2),
    st.text(min_size=1, max_size=40),
).map(lambda t: [*t[0], pb.ChatMessage(role="user", content=t[1])])
_ANY_MESSAGES = st.lists(st.builds(pb.ChatMessage, role=_ANY_ROLE, content=_ANY_CONTENT), max_size=MAX_MESSAGES + 2)

_BAD_FLOATS = st.one_of(st.floats(), st.floats(width=32),
                        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, -1e-45, 2.0000002, 1e300, -1.0]))
_ANY_STOP = st.one_of(st.just(""), st.text(max_size=8), _repeated_text(MAX_STOP_BYTES - 2, MAX_STOP_BYTES + 4),
                      st.sampled_from(["k", "o", "ok", "\x00", " "]))

# Each part: (a strategy that is usually valid, an arbitrary/hostile one).
_PARTS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "messages": (_GOOD_MESSAGES, _ANY_MESSAGES),
    "max_tokens": (st.integers(0, MAX_TOKENS_CAP),
                   st.one_of(INT32, st.sampled_from([-1, MAX_TOKENS_CAP + 1, 2**31 - 1, -(2**31)]))),
    "temperature": (st.none() | st.floats(0, 2), st.none() | _BAD_FLOATS),
    "top_p": (st.none() | st.floats(0.01, 1), st.none() | _BAD_FLOATS | st.floats(0, 1e-40)),
    "stop": (st.lists(st.text(min_size=1, max_size=5), max_size=MAX_STOP), st.lists(_ANY_STOP, max_size=MAX_STOP + 2)),
    "seed": (st.none() | UINT32, st.none() | INT64 | st.sampled_from([-1, 2**32, 2**63 - 1, -(2**63)])),
    "preference": (st.sampled_from([0, 1, 2]), INT32 | st.sampled_from([3, 4, -1, 2**31 - 1])),
    "max_latency_ms": (st.just(0), UINT32),
    "max_cost_usd": (st.floats(0, 1e6), _BAD_FLOATS),
    "request_id": (st.text(max_size=32), st.text(max_size=150) | _repeated_text(MAX_ID_CHARS - 2, MAX_ID_CHARS + 4)),
    "model": (st.sampled_from(["", MODEL]),
              st.text(max_size=20) | _repeated_text(MAX_ID_CHARS - 2, MAX_ID_CHARS + 4)
              | st.sampled_from([MODEL + " ", "FAKE", "\x00"])),
}


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    """A GenerateRequest that is valid except in a drawn set of parts, which get arbitrary values."""
    hostile = draw(st.sets(st.sampled_from(sorted(_PARTS)), max_size=4))
    v = {name: draw(bad if name in hostile else good) for name, (good, bad) in _PARTS.items()}
    params = pb.GenerationParams(max_tokens=v["max_tokens"], stop=v["stop"])
    for opt in ("temperature", "top_p", "seed"):
        if v[opt] is not None:
            setattr(params, opt, v[opt])   # float32 fields round here; the oracle reads the stored value
    return pb.GenerateRequest(
        messages=v["messages"], params=params, request_id=v["request_id"], model=v["model"],
        routing=pb.RoutingHints(preference=v["preference"], max_latency_ms=v["max_latency_ms"],
                                max_cost_usd=v["max_cost_usd"]))


def _fake_prompt_tokens(req: pb.GenerateRequest) -> int:
    """How the fake backend counts a prompt (edge/backends/fake.py)."""
    return sum(len(m.content.split()) + 2 for m in req.messages)


def violated_fields(req: pb.GenerateRequest) -> set[str]:
    """Every field of `req` out of bounds, named as the daemon names them; the daemon reports one."""
    bad: set[str] = set()
    if len(req.request_id) > MAX_ID_CHARS:
        bad.add("request_id")
    if len(req.model) > MAX_ID_CHARS:
        bad.add("model")
    msgs = list(req.messages)
    bad |= {f"messages[{i}].role" for i, m in enumerate(msgs) if m.role not in ROLES}
    total = sum(len(m.content.encode("utf-8")) for m in msgs)
    if (not msgs or len(msgs) > MAX_MESSAGES or total > MAX_CONTENT_BYTES or total == 0
            or not any(m.role == "user" and m.content.strip() for m in msgs)):
        bad.add("messages")
    p = req.params
    if not 0 <= p.max_tokens <= MAX_TOKENS_CAP:
        bad.add("params.max_tokens")
    if p.HasField("temperature") and not (math.isfinite(p.temperature) and 0 <= p.temperature <= 2):
        bad.add("params.temperature")
    if p.HasField("top_p") and not (math.isfinite(p.top_p) and 0 < p.top_p <= 1):
        bad.add("params.top_p")
    if len(p.stop) > MAX_STOP:
        bad.add("params.stop")
    bad |= {f"params.stop[{i}]" for i, s in enumerate(p.stop) if not s or len(s.encode("utf-8")) > MAX_STOP_BYTES}
    if p.HasField("seed") and not 0 <= p.seed < 2**32:
        bad.add("params.seed")
    r = req.routing
    if r.preference not in pb.RoutePreference.values():
        bad.add("routing.preference")
    if not math.isfinite(r.max_cost_usd) or r.max_cost_usd < 0:
        bad.add("routing.max_cost_usd")
    return bad


def expected_outcome(req: pb.GenerateRequest) -> tuple[grpc.StatusCode, set[str]]:
    """The status the contract promises, and for INVALID_ARGUMENT the fields it may name.

    Order of checks in the daemon: field validation, then the router (unknown model,
    then CLOUD_ONLY with no remote tier), then the backend (prompt longer than n_ctx).
    """
    bad = violated_fields(req)
    if bad:
        return grpc.StatusCode.INVALID_ARGUMENT, bad
    if req.model and req.model != MODEL:
        return grpc.StatusCode.NOT_FOUND, set()
    if req.routing.preference == pb.ROUTE_PREFERENCE_CLOUD_ONLY:
        return grpc.StatusCode.UNAVAILABLE, set()
    if _fake_prompt_tokens(req) >= N_CTX:
        return grpc.StatusCode.INVALID_ARGUMENT, {"messages"}
    return grpc.StatusCode.OK, set()


def expected_text(req: pb.GenerateRequest) -> str:
    """What the fake backend answers: REPLY cut at the first stop string it contains (one token)."""
    text = REPLY
    for s in req.params.stop:
        if s in text:
            text = text[: text.index(s)]
    return text


def _check_answer(req: pb.GenerateRequest, resp: pb.GenerateResponse) -> None:
    assert isinstance(resp.text, str) and resp.text == expected_text(req), resp.text
    assert resp.served_by.tier == pb.TIER_LOCAL and resp.served_by.model == MODEL, resp.served_by
    assert resp.finish_reason == "stop"
    if req.request_id:
        assert resp.request_id == req.request_id
    else:
        assert resp.request_id


@pytest.fixture(scope="module")
def fake_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon with the fake backend and small limits for every request property."""
    tmp = tmp_path_factory.mktemp("properties")
    config = fake_config(reply=REPLY, token_delay_ms=0, n_ctx=N_CTX) + f"""
[limits]
max_content_bytes = {MAX_CONTENT_BYTES}
max_messages = {MAX_MESSAGES}
max_tokens_cap = {MAX_TOKENS_CAP}
default_max_tokens = {DEFAULT_MAX_TOKENS}
max_stop_sequences = {MAX_STOP}
"""
    d = start_daemon(tmp, config, name="props")
    yield d
    if d.proc.poll() is None:
        try:
            d.stop(timeout=30)
        except Exception:  # noqa: BLE001 - a wedged daemon was already reported by the test
            d.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def stub(fake_daemon: DaemonProcess) -> Iterator[pb_grpc.EdgeRouterStub]:
    with grpc.insecure_channel(fake_daemon.target) as channel:
        yield pb_grpc.EdgeRouterStub(channel)


def _call(stub: pb_grpc.EdgeRouterStub, req: pb.GenerateRequest,
          streaming: bool) -> tuple[grpc.StatusCode, str, pb.GenerateResponse | None]:
    """Send `req`; return (status, details, the answer when OK), checking a stream's shape."""
    try:
        if not streaming:
            return grpc.StatusCode.OK, "", stub.Generate(req, timeout=CALL_TIMEOUT_S)
        events = list(stub.GenerateStream(req, timeout=CALL_TIMEOUT_S))
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds.count("final") == 1 and kinds[-1] == "final", kinds
    final = events[-1].final
    assert "".join(e.delta for e in events if e.WhichOneof("event") == "delta") == final.text
    return grpc.StatusCode.OK, "", final


def test_any_request_gets_the_promised_status_and_the_daemon_survives(
        fake_daemon: DaemonProcess, stub: pb_grpc.EdgeRouterStub) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=REQUEST_EXAMPLES, **_COMMON)
    @given(req=generate_requests(), streaming=st.booleans())
    def check(req: pb.GenerateRequest, streaming: bool) -> None:
        code, allowed = expected_outcome(req)
        t0 = time.monotonic()
        got, details, resp = _call(stub, req, streaming)
        elapsed = time.monotonic() - t0
        seen[got.name] += 1
        assert elapsed < CALL_TIMEOUT_S, f"took {elapsed:.2f}s"
        assert got == code, f"expected {code.name}, got {got.name}: {details!r}"
        if got == grpc.StatusCode.OK:
            assert resp is not None
            _check_answer(req, resp)
        elif got == grpc.StatusCode.INVALID_ARGUMENT:
            named = details.split(": ", 1)[0]
            assert named in allowed, f"details {details!r} name {named!r}, not one of {sorted(allowed)}"
        elif got == grpc.StatusCode.NOT_FOUND:
            assert "not served here" in details and MODEL in details, details
        elif got == grpc.StatusCode.UNAVAILABLE:
            assert "CLOUD_ONLY" in details, details

    check()
    # The generator reached both the answering and the rejecting paths.
    assert seen["OK"] >= 10 and seen["INVALID_ARGUMENT"] >= 10, seen
    # Nothing above crashed, wedged or leaked anything in the daemon.
    assert fake_daemon.proc.poll() is None, fake_daemon.logs()
    assert health_status(fake_daemon.target) == SERVING
    deadline = time.monotonic() + 10
    while (status := stub.GetStatus(pb.GetStatusRequest(), timeout=5)).models[0].active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status.state == "serving"
    assert status.models[0].active == 0 and status.models[0].queue_depth == 0, status.models[0]
    answer = stub.Generate(build_request("still there?", request_id="after"), timeout=10)
    assert (answer.text, answer.request_id, answer.served_by.tier) == (REPLY, "after", pb.TIER_LOCAL)
    assert "internal error" not in fake_daemon.logs()


# ---------------------------------------------------------------------------------------
# 2. The config loader
# ---------------------------------------------------------------------------------------

_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.booleans(), INT64, st.floats(), st.text(max_size=20), st.dates(), st.times(), st.datetimes())
ANY_VALUE: st.SearchStrategy[Any] = st.recursive(
    _SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)
# Strings a field might plausibly hold: names, addresses, enum words, bad variants of them.
_PLAUSIBLE_STRINGS = st.sampled_from([
    "", "fake", "mine", "a", "local", "x y", "a/b", "127.0.0.1:0", "localhost:70000", "nohostport", ":1",
    "http://127.0.0.1:9", "ftp://x", "openai", "anthropic", "gemini", "llama", "smart", "chain", "debug",
    "info", "LOUD", "cloud", "onprem", "/tmp/x.gguf", "0" * 64])


def _entry_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """(model, is_list) for a field typed `Model` or `list[Model]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if get_origin(annotation) is list:
        (arg,) = get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, True
    return None


def _tomlable(v: Any) -> bool:
    if isinstance(v, list):
        return all(_tomlable(x) for x in v)
    return isinstance(v, (bool, int, float, str))


def _leaf_values(field: FieldInfo) -> st.SearchStrategy[Any]:
    """Values for one schema leaf: anything at all, its default, its enum words, values at and past its bounds."""
    options: list[st.SearchStrategy[Any]] = [ANY_VALUE]
    if not field.is_required():
        default = field.get_default(call_default_factory=True)
        if _tomlable(default):
            options.append(st.just(default))
    ann = field.annotation
    if get_origin(ann) is Literal:
        options.append(st.sampled_from(get_args(ann)))
    elif get_origin(ann) is list and get_origin(get_args(ann)[0]) is Literal:
        options.append(st.lists(st.sampled_from(get_args(get_args(ann)[0])), max_size=4))
    bounds = [b for m in field.metadata for a in ("ge", "gt", "le", "lt") if (b := getattr(m, a, None)) is not None]
    if bounds:
        options.append(st.sampled_from(sorted({b + d for b in bounds for d in (-1, 0, 1)} | {b * 2 for b in bounds})))
        lo, hi = min(bounds), max(bounds)
        if ann is int and lo < hi:
            options.append(st.integers(lo, hi))
        elif ann is float and lo < hi:
            options.append(st.floats(lo, hi))
    if ann is str:
        options.append(_PLAUSIBLE_STRINGS)
    elif ann is bool:
        options.append(st.booleans())
    return st.one_of(options)


def _unknown_keys(known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    key = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["listen_addr", "Server", "a.b", "x y", "\x00"]))
    return _mostly(st.just({}), st.dictionaries(key.filter(lambda k: k not in known), ANY_VALUE, min_size=1,
                                                max_size=2), one_in=3)


def _table(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """A TOML table for `model`: a subset of its keys (required ones usually present), maybe unknown keys."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        sub = _entry_model(field.annotation)
        if sub is None:
            strategy = _leaf_values(field)
        else:
            sub_model, is_list = sub
            table = st.deferred(lambda m=sub_model: _table(m))
            strategy = _mostly(st.lists(table, max_size=3) if is_list else table, ANY_VALUE, one_in=6)
        (required if field.is_required() else optional)[name] = strategy
    known = set(model.model_fields)
    keys = _mostly(st.fixed_dictionaries(required, optional=optional),
                   st.fixed_dictionaries({}, optional={**required, **optional}), one_in=6)
    return st.tuples(keys, _unknown_keys(known)).map(lambda t: {**t[0], **t[1]})


def documents() -> st.SearchStrategy[dict[str, Any]]:
    return _table(Settings)


# -- a minimal TOML writer (inline tables only; tomllib reads it back, checked below) ----

def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (date, dtime)):   # datetime is a date
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def to_toml(doc: dict[str, Any]) -> str:
    return "".join(f"{_toml_str(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every key path in a parsed document, joined the way ConfigError joins them."""
    if prefix:
        yield ".".join(prefix)
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, str(i)))


def assert_names_keys(message: str, origin: Path, roots: set[str], doc_paths: set[str]) -> None:
    """A ConfigError from the schema names the file, then one "path: why" line per problem,
    each path rooted at a top-level key the input set; "unknown key" lines name an input path exactly."""
    assert str(origin) in message, message
    header, *lines = message.split("\n  ")
    assert header.startswith("invalid config") and lines, message
    for line in lines:
        assert not line.startswith("(top level)"), f"problem not attributed to any key: {message!r}"
    assert any(lines[0].startswith(r + ".") or lines[0].startswith(r + ":") for r in roots), \
        f"first problem is not named by a key path under {sorted(roots)}: {message!r}"
    for line in lines:
        if line.endswith(": unknown key"):
            assert line[: -len(": unknown key")] in doc_paths, f"unknown key path not in the document: {line!r}"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-properties")


def _load(path: Path, environ: dict[str, str]) -> Settings | ConfigError:
    """load_settings' result or its ConfigError; any other exception fails the property."""
    try:
        return load_settings(path, environ=environ)
    except ConfigError as exc:
        return exc


def test_any_config_document_loads_or_names_the_bad_keys(config_dir: Path) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=CONFIG_EXAMPLES, **_COMMON)
    @given(doc=documents())
    def check(doc: dict[str, Any]) -> None:
        text = to_toml(doc)
        parsed = tomllib.loads(text)   # the writer's own correctness, else this property would prove less
        path = config_dir / "doc.toml"
        path.write_text(text, encoding="utf-8")
        result = _load(path, {})
        seen[type(result).__name__] += 1
        if isinstance(result, ConfigError):
            assert_names_keys(str(result), path, set(parsed), set(_paths(parsed)))

    check()
    assert seen["Settings"] >= 10 and seen["ConfigError"] >= 10, seen


def _corrupt(t: tuple[bytes, bytes, int]) -> bytes:
    data, junk, at = t
    at = at % (len(data) + 1)
    return data[:at] + junk + data[at:]


_BYTES = st.one_of(
    st.binary(max_size=300),
    st.tuples(documents().map(lambda d: to_toml(d).encode("utf-8")),
              st.one_of(st.binary(min_size=1, max_size=4),
                        st.sampled_from([b"\xff", b"\xc3", b"[", b"=", b"\n[a\n", b"\x00"])),
              st.integers(0, 10_000)).map(_corrupt),
)


@settings(max_examples=BYTES_EXAMPLES, **_COMMON)
@given(data=_BYTES)
def test_any_bytes_as_config_file_load_or_give_a_config_error_naming_the_file(config_dir: Path, data: bytes) -> None:
    path = config_dir / "bytes.toml"
    path.write_bytes(data)
    result = _load(path, {})
    if isinstance(result, ConfigError):
        assert str(path) in str(result), str(result)
    else:
        assert isinstance(result, Settings)


_ENV_VALUES = st.one_of(
    st.text(max_size=30),
    st.text(max_size=10).map(lambda s: f" {s}\t"),   # surrounding whitespace must survive for string options
    st.sampled_from(["", "0", "1", "-1", " 5 ", "1e3", "3.5", "true", "no", "maybe", "127.0.0.1:0", "host:99999",
                     "h:\u00b2", "h:\u0663", "debug", "LOUD", "/tmp/s.sock", "fake", " fake ", " 127.0.0.1:0"]),
)
# A base file for the overrides: sections absent, present, or not tables at all.
_ENV_BASE_DOCS = st.fixed_dictionaries({}, optional={
    "server": _mostly(st.just({}), ANY_VALUE), "local": _mostly(st.just({"queue_size": 2}), ANY_VALUE),
    "routing": _mostly(st.just({}), ANY_VALUE), "log_level": st.sampled_from(["info", "loud"])})


def test_env_overrides_apply_or_name_the_field(config_dir: Path) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=ENV_EXAMPLES, **_COMMON)
    @given(doc=_ENV_BASE_DOCS,
           environ=st.dictionaries(st.sampled_from(sorted(ENV_OVERRIDES)), _ENV_VALUES, max_size=4))
    def check(doc: dict[str, Any], environ: dict[str, str]) -> None:
        path = config_dir / "env.toml"
        path.write_text(to_toml(doc), encoding="utf-8")
        result = _load(path, environ)
        seen[type(result).__name__] += 1
        overridden = {ENV_OVERRIDES[var] for var in environ}
        if isinstance(result, ConfigError):
            roots = set(doc) | {section or key for section, key in overridden}
            env_paths = {f"{s}.{k}" if s else k for s, k in overridden}
            assert_names_keys(str(result), path, roots, set(_paths(doc)) | env_paths)
            if not doc:   # nothing but the overrides could be wrong: the message names one of them
                assert any(p in str(result) for p in env_paths), str(result)
            return
        for var, value in environ.items():
            section, key = ENV_OVERRIDES[var]
            target: Any = getattr(result, section) if section else result
            if isinstance(getattr(target, key), str):
                assert getattr(target, key) == value, (var, value)

    check()
    assert seen["Settings"] >= 10 and seen["ConfigError"] >= 10, seen


# ---------------------------------------------------------------------------------------
# Known product bugs, pinned (strict: these start failing once the bug is fixed)
# ---------------------------------------------------------------------------------------

@settings(max_examples=50, **_COMMON)
@example(depth=1000, opener="[")
@given(depth=st.integers(1, 5000), opener=st.sampled_from(["[", "{b = "]))
def test_deeply_nested_toml_is_a_config_error(config_dir: Path, depth: int, opener: str) -> None:
    path = config_dir / "deep.toml"
    path.write_text("a = " + opener * depth, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)


def test_config_path_that_is_a_directory_is_a_config_error(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir, environ={})
    assert str(config_dir) in str(info.value)


@settings(max_examples=20, **_COMMON)
@given(sections=st.lists(st.sampled_from(["onprem", "cloud"]), min_size=1, max_size=3),
       name=st.sampled_from(["local", "gpu-box"]))
def test_backend_name_clash_error_names_the_section(config_dir: Path, sections: list[str], name: str) -> None:
    if name != "local" and len(sections) < 2:
        sections = [*sections, "cloud"]   # a clash needs two entries unless the name is 'local'
    doc: dict[str, list[dict[str, str]]] = {}
    for s in sections:
        doc.setdefault(s, []).append({"name": name, "model": "m", "base_url": "http://127.0.0.1:9"})
    path = config_dir / "clash.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert_names_keys(str(info.value), path, set(doc), set(_paths(doc)))
