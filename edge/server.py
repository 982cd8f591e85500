"""The gRPC front door: wire <-> core translation, health, reflection, lifecycle.

Build with `Daemon(settings)` (verifies model files, binds nothing), then
`await daemon.start()` and `await daemon.wait_for_shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edge import __version__
from edge.config import Settings
from edge.engine import Engine
from edge.errors import ConfigError, wire_error
from edge.logs import quiet_accept_errors
from edge.private_files import check_secret_file
from edge.pipeline.admission import Arrival
from edge.security import (
    Gatekeeper,
    Guard,
    RateLimiter,
    TokenStore,
    current_client,
    peer_host,
    peer_identity,
    reload_tokens,
    server_credentials,
)
from edge.snapshot import Snapshot
from edge.types import Notice, Preference, Result, Strategy, Tier
from edge.v1 import router_pb2 as pb
from edge.v1 import router_pb2_grpc as pb_grpc
from edge.validation import Draft

__all__ = ["Daemon", "run_daemon"]

log = logging.getLogger("edge.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EdgeRouter"].full_name

# The core's tiers and preferences and their wire values.
_TIERS = {Tier.LOCAL: pb.TIER_LOCAL, Tier.ONPREM: pb.TIER_ONPREM, Tier.CLOUD: pb.TIER_CLOUD}
_PREFERENCES = {pb.ROUTE_PREFERENCE_UNSPECIFIED: Preference.AUTO, pb.ROUTE_PREFERENCE_AUTO: Preference.AUTO,
                pb.ROUTE_PREFERENCE_LOCAL_ONLY: Preference.LOCAL_ONLY,
                pb.ROUTE_PREFERENCE_CLOUD_ONLY: Preference.CLOUD_ONLY}
_STRATEGIES = {pb.STRATEGY_UNSPECIFIED: Strategy.AUTO, pb.STRATEGY_AUTO: Strategy.AUTO,
               pb.STRATEGY_DIRECT: Strategy.DIRECT, pb.STRATEGY_PLAN: Strategy.PLAN}


def to_draft(request: pb.GenerateRequest) -> Draft:
    """The core's view of a gRPC request (unchecked: validation names what is wrong)."""
    p, r = request.params, request.routing
    return Draft(messages=[(m.role, m.content) for m in request.messages], max_tokens=p.max_tokens,
                 temperature=p.temperature if p.HasField("temperature") else None,
                 top_p=p.top_p if p.HasField("top_p") else None, stop=list(p.stop),
                 seed=p.seed if p.HasField("seed") else None,
                 preference=_PREFERENCES.get(r.preference, str(r.preference)), max_latency_ms=r.max_latency_ms,
                 max_cost_usd=r.max_cost_usd, request_id=request.request_id, model=request.model,
                 strategy=_STRATEGIES.get(r.strategy, str(r.strategy)))


def to_proto(result: Result) -> pb.GenerateResponse:
    t, c = result.timings, result.cache
    return pb.GenerateResponse(
        request_id=result.request_id,
        text=result.text,
        finish_reason=result.finish_reason,
        usage=pb.Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
        served_by=pb.ServedBy(tier=_TIERS[result.tier], backend=result.backend, model=result.model),
        timings=pb.Timings(queue_wait_ms=t.queue_wait_ms, time_to_first_token_ms=t.time_to_first_token_ms,
                           total_ms=t.total_ms, tokens_per_second=t.tokens_per_second),
        trace=[pb.Reason(code=r.code, detail=r.detail) for r in result.trace],
        degraded=result.degraded,
        cost_usd=result.cost_usd,
        attempts=[pb.Attempt(backend=a.backend, tier=_TIERS[a.tier], outcome=a.outcome, latency_ms=a.latency_ms,
                             detail=a.detail) for a in result.attempts],
        cache=None if c is None else pb.CacheHit(
            match=c.match, similarity=c.similarity, age_s=c.age_s,
            original=pb.ServedBy(tier=_TIERS[c.original.tier], backend=c.original.backend, model=c.original.model)),
    )


class _Servicer(pb_grpc.EdgeRouterServicer):
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._engine = daemon.engine

    def _events(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext,
                stream: bool) -> AsyncIterator[str | Notice | Result]:
        arrival = Arrival(request_id=request.request_id or uuid.uuid4().hex, door="grpc", stream=stream,
                          time_remaining=context.time_remaining(), tenant=self._tenant(context),
                          peer=peer_host(context.peer()))
        return self._engine.serve(to_draft(request), arrival)

    def _tenant(self, context: grpc.aio.ServicerContext) -> str:
        """Whose cached answers a call may see: the token's client; else, under mutual TLS,
        the client certificate's identity, and the unix socket (no certificate) a scope of
        its own; else '' (without tokens or mutual TLS everyone on the device is one tenant)."""
        if client := current_client():
            return client
        if not self._daemon.settings.security.tls_client_ca_file:
            return ""
        return peer_identity(context) or ("local-socket" if context.peer().startswith("unix:") else "")

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, exc: Exception, request_id: str) -> None:
        wire = wire_error(exc, request_id)
        await context.abort(grpc.StatusCode[wire.grpc_code], wire.message)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        result: Result | None = None
        try:
            async for event in self._events(request, context, stream=False):
                if isinstance(event, Result):
                    result = event
        except Exception as exc:  # noqa: BLE001 - recorded by the engine; mapped to a status here
            await self._abort(context, exc, request.request_id)
        if result is None:
            await context.abort(grpc.StatusCode.INTERNAL, "generation ended without a result")
        return to_proto(result)

    async def GenerateStream(self, request: pb.GenerateRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.GenerateStreamResponse]:
        try:
            async for event in self._events(request, context, stream=True):
                if type(event) is str:
                    yield pb.GenerateStreamResponse(delta=event)
                elif isinstance(event, Result):
                    yield pb.GenerateStreamResponse(final=to_proto(event))
                else:
                    yield pb.GenerateStreamResponse(notice=pb.Reason(code=event.reason.code,
                                                                     detail=event.reason.detail))
        except Exception as exc:  # noqa: BLE001 - recorded by the engine; mapped to a status here
            await self._abort(context, exc, request.request_id)

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        models = [
            # The file's name only: where this box keeps its files is not the client's business.
            pb.ModelInfo(name=d.name, tier=pb.TIER_LOCAL, backend=d.backend, path=Path(d.path).name if d.path else "",
                         size_bytes=d.size_bytes,
                         sha256=d.sha256, context_length=d.context_length,
                         is_default=d.name == self._engine.default_model, state=state)
            for d, state in self._engine.describe()
        ]
        return pb.ListModelsResponse(models=models)

    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        snap = await asyncio.to_thread(self._engine.snapshot)  # reads the ledger: off the loop
        return self._daemon.status(snap)


def _models(snap: Snapshot, rss: int) -> list[pb.ModelStatus]:
    return [pb.ModelStatus(
        name=m.name, state=m.state, queue_depth=m.queue_depth, queue_capacity=m.queue_capacity, active=m.active,
        requests_total=m.requests_total, rejected_total=m.rejected_total, cancelled_total=m.cancelled_total,
        tokens_generated_total=m.tokens_generated_total, last_completion_tokens=m.last_completion_tokens,
        n_threads=m.description.n_threads, resident_bytes=rss, profiled=m.profiled,
        prompt_tokens_per_second=m.prompt_tokens_per_second or 0.0,
        generation_tokens_per_second=m.generation_tokens_per_second or 0.0) for m in snap.models]


def _backends(snap: Snapshot) -> list[pb.BackendStatus]:
    return [pb.BackendStatus(
        name=b.name, tier=_TIERS[b.tier], kind=b.kind, model=b.model, breaker=b.breaker,
        consecutive_failures=b.consecutive_failures, breaker_opened_total=b.breaker_opened_total,
        retry_in_s=b.retry_in_s, outstanding=b.outstanding, requests_total=b.requests_total,
        failures_total=b.failures_total, out_of_rotation=b.out_of_rotation, capabilities=b.capabilities,
        probing=b.probing)
        for b in snap.backends]


def _fleet(snap: Snapshot) -> pb.FleetStatus | None:
    f = snap.fleet
    if f is None:
        return None
    return pb.FleetStatus(fleet=f.fleet, box=f.box, connected=f.connected, since_unix_s=f.since, server=f.server,
                          last_error=f.last_error, pending=f.pending, heartbeats_sent=f.heartbeats_sent)


def _router(snap: Snapshot) -> pb.RouterFit | None:
    r = snap.router
    if r is None:
        return None
    return pb.RouterFit(labels=r.labels, fitted=r.fitted, threshold=r.threshold or 0.0,
                        estimated_agreement=r.estimated_agreement or 0.0, remote_share=r.remote_share or 0.0,
                        target=r.target, shadow_samples=r.shadow_samples)


def _hardware(hw: Any) -> pb.HardwareSummary | None:
    if hw is None:
        return None
    return pb.HardwareSummary(
        fingerprint=hw.fingerprint, cpu_model=hw.cpu_model or "", physical_cores=hw.physical_cores or 0,
        logical_cores=hw.logical_cores or 0, isa=list(hw.isa or ()), ram_total_bytes=hw.ram_total_bytes or 0,
        ram_available_bytes=hw.ram_available_bytes or 0, gpu_offload=bool(hw.llama_gpu_offload),
        gpus=[g.name for g in hw.gpus or ()],
        battery_percent=hw.battery_percent if hw.battery_percent is not None else -1.0,
        on_battery=hw.battery_plugged is False, thermal_throttled=bool(hw.temperature_high))


class _Health(health.aio.HealthServicer):
    """grpc.health.v1 with List implemented (the package leaves it raising, which logged a
    traceback for every call a client made)."""

    def __init__(self) -> None:
        super().__init__()
        self._statuses: dict[str, int] = {}
        self._draining = False

    async def set(self, service: str, status: int) -> None:  # type: ignore[override]
        if not self._draining:
            self._statuses[service] = status
        await super().set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        self._draining = True
        self._statuses = dict.fromkeys(self._statuses, health_pb2.HealthCheckResponse.NOT_SERVING)
        await super().enter_graceful_shutdown()

    async def List(self, request: health_pb2.HealthListRequest,  # noqa: N802 - the RPC's name
                   context: grpc.aio.ServicerContext) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status) for name, status in self._statuses.items()})


class Daemon:
    """The daemon's lifecycle: bind, load, serve, drain."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = "starting"
        # Verifies model files: raises before anything listens.
        self.engine = Engine(settings, state=lambda: self.state)
        sec = settings.security
        # Secrets are checked here too, so a world-readable key stops the daemon before it listens.
        self.credentials = server_credentials(sec)
        self.tokens = TokenStore(sec.tokens_file) if sec.tokens_file else None
        limiter = RateLimiter(sec.rate_limit_per_s, sec.rate_limit_burst) if sec.rate_limit_per_s > 0 else None
        rejections = self.engine.metrics.rejections
        self.doors = Gatekeeper(self.tokens, limiter, lambda why: rejections.labels(why).inc())
        self.started_at = time.monotonic()
        self.addresses: dict[str, str] = {}
        self._server: grpc.aio.Server | None = None
        self._health = _Health()
        self._stop = asyncio.Event()
        self._load_task: asyncio.Task[None] | None = None
        self.http: Any = None  # edge.http_api.HttpFrontDoor when [http] listen is set
        self.load_error: BaseException | None = None
        # Each listener's self-check at start: "" when this machine could connect, else why not.
        self.unreachable: dict[str, str] = {}

    def status(self, snap: Snapshot) -> pb.GetStatusResponse:
        import psutil

        rss = psutil.Process().memory_info().rss
        sec = self.settings.security
        return pb.GetStatusResponse(
            version=__version__, state=self.state, uptime_s=time.monotonic() - self.started_at,
            models=_models(snap, rss), default_model=snap.default_model, backends=_backends(snap),
            network=snap.network, hardware=_hardware(snap.hardware),
            budgets=[pb.BudgetWindow(period=b.period, spent_usd=b.spent_usd, limit_usd=b.limit_usd or 0.0,
                                     remaining_usd=b.remaining_usd or 0.0)
                     for b in snap.budgets],
            auth_required=bool(sec.tokens_file),
            tls="mutual" if sec.tls_client_ca_file else "tls" if sec.tls_cert_file else "off",
            rate_limit_per_s=sec.rate_limit_per_s, pii_guard=self.settings.privacy.pii,
            router=_router(snap), fleet=_fleet(snap))

    async def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)

    async def start(self) -> dict[str, str]:
        """Bind the listeners and begin loading models; returns the bound addresses."""
        raise_file_limit()
        quiet_accept_errors(asyncio.get_running_loop())
        server = self._grpc_server()
        self._bind(server)
        if self.settings.metrics.listen:
            self._start_metrics()
        if self.settings.http.listen:
            from edge.http_api import HttpFrontDoor  # the HTTP door (and uvicorn) only when configured

            self.http = HttpFrontDoor(self)
            self.addresses["http"] = await self.http.start(self.settings.http.listen)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        self._server = server
        await self._check_listeners()
        self._load_task = asyncio.create_task(self._load())
        return self.addresses

    async def _check_listeners(self) -> None:
        """Connect to each bound listener from this machine and say which ones work: a
        bound socket is no proof (with the loopback interface down the daemon bound,
        logged "serving", and no client on the device could reach it). Start-up goes on
        either way; whatever is unreachable is named with the error."""
        names = list(self.addresses)
        problems = await asyncio.gather(*(probe_listener(self.addresses[n]) for n in names))
        self.unreachable = {n: p for n, p in zip(names, problems, strict=True) if p}
        log.info("listening", extra={"addresses": self.addresses,
                                     "reachable": {n: n not in self.unreachable for n in names}})
        for name, problem in self.unreachable.items():
            log.warning("listener not reachable from this machine",
                        extra={"listener": name, "address": self.addresses[name], "error": problem})
        if len(self.unreachable) == len(names):
            log.error("no listener is reachable from this machine: no client can connect (is the loopback "
                      "interface up? `ip addr show lo`; a firewall dropping local traffic?)",
                      extra={"unreachable": self.unreachable})

    def _grpc_server(self) -> grpc.aio.Server:
        """The gRPC server with its services and the limits that bound what a caller can hold."""
        cfg = self.settings.server
        interceptors = [Guard(self.doors)] if self.doors.closed else []
        server = grpc.aio.server(interceptors=interceptors, maximum_concurrent_rpcs=cfg.max_concurrent_rpcs, options=[
            ("grpc.max_receive_message_length", cfg.max_receive_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", cfg.max_streams_per_connection),
            ("grpc.server_handshake_timeout_ms", int(cfg.handshake_timeout_s * 1000)),
            ("grpc.max_connection_age_ms", int(cfg.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(cfg.max_connection_age_grace_s * 1000)),
        ])
        pb_grpc.add_EdgeRouterServicer_to_server(_Servicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
        return server

    def _bind(self, server: grpc.aio.Server) -> None:
        """The TCP listener and the unix socket, as configured (at least one)."""
        cfg = self.settings.server
        if cfg.listen:
            # Tried with a plain socket first: gRPC's own failure is a log line on stderr and
            # a message that names neither the cause nor the fix.
            if (problem := _bind_problem(cfg.listen)) is not None:
                raise ConfigError(problem)
            try:
                if self.credentials is not None:
                    port = server.add_secure_port(cfg.listen, self.credentials)
                else:
                    port = server.add_insecure_port(cfg.listen)
            except RuntimeError as exc:
                raise ConfigError(_bind_problem(cfg.listen) or f"server.listen: cannot bind {cfg.listen}: {exc}") from exc
            host = cfg.listen.rpartition(":")[0]
            self.addresses["tcp"] = f"{host}:{port}"
        if cfg.unix_socket:
            self.addresses["unix"] = f"unix:{_bind_unix(server, Path(cfg.unix_socket), cfg.unix_socket_group)}"
        if not self.addresses:
            raise ConfigError("server: neither listen nor unix_socket is set; nothing to serve on")

    def _start_metrics(self) -> None:
        m = self.settings.metrics
        self.engine.metrics.attach(lambda: self.engine.snapshot(), lambda: self.state)
        if m.tls_key_file:
            check_secret_file(m.tls_key_file, "metrics.tls_key_file")
        try:
            self.addresses["metrics"] = self.engine.metrics.serve(
                m.listen, certfile=m.tls_cert_file, keyfile=m.tls_key_file, client_cafile=m.tls_client_ca_file)
        except OSError as exc:
            raise ConfigError(f"metrics.listen: cannot bind {m.listen}: {exc}") from exc

    async def _load(self) -> None:
        try:
            await self.engine.start()
        except Exception as exc:  # noqa: BLE001 - reported, then the daemon exits non-zero
            self.load_error = exc
            log.error("model failed to load; shutting down", extra={"error": str(exc)})
            self._stop.set()
            return
        self.state = "serving"
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"default_model": self.engine.default_model,
                                   **({"unreachable": self.unreachable} if self.unreachable else {})})

    def reload(self) -> None:
        if self.tokens is None:
            log.info("SIGHUP: nothing to reload (no security.tokens_file)")
            return
        reload_tokens(self.tokens)

    def request_shutdown(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        # SIGHUP (systemctl reload) re-reads what can be re-read; without a handler it
        # would terminate the daemon.
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def wait_for_shutdown(self) -> None:
        """Serve until asked to stop, then drain: refuse new work, let in-flight finish within the grace."""
        await self._stop.wait()
        self.state = "draining"
        grace = self.settings.server.shutdown_grace_s
        log.info("draining", extra={"grace_s": grace})
        await self._health.enter_graceful_shutdown()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        stops = [self._server.stop(grace)] if self._server is not None else []
        if self.http is not None:
            stops.append(self.http.stop())
        await asyncio.gather(*stops)  # both front doors drain within the same grace
        await self.engine.close()
        self.engine.metrics.close()
        if self.settings.server.unix_socket:
            Path(self.settings.server.unix_socket).unlink(missing_ok=True)
        log.info("stopped")


async def run_daemon(settings: Settings, *, on_listening: Callable[[dict[str, str]], Awaitable[None] | None] | None = None) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit code; raises EdgeError when a model failed to load."""
    daemon = Daemon(settings)
    daemon.install_signal_handlers()
    addresses = await daemon.start()
    if on_listening is not None:
        maybe = on_listening(addresses)
        if asyncio.iscoroutine(maybe):
            await maybe
    await daemon.wait_for_shutdown()
    if daemon.load_error is not None:
        raise daemon.load_error  # the CLI reports it and exits non-zero
    return 0


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (systemd's default soft limit
    is 1024, its hard one far higher): a flood of connections to one door must not
    leave the others without descriptors. Returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit", extra={"soft": soft, "hard": hard, "error": str(exc)})
    return soft


def _bind_problem(listen: str) -> str | None:
    """Why `listen` (host:port) cannot be bound, as one line with the fix; None when a
    plain socket binds it (or the host does not resolve: gRPC reports that itself)."""
    import errno
    import socket

    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        return None  # any free port
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError:
        return None
    fix = "pick another with --listen HOST:PORT (or server.listen / EDGE_LISTEN; port 0 = any free port)"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            # As gRPC binds: SO_REUSEADDR, so a port in TIME_WAIT is free, one with a listener is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return (f"server.listen: address already in use: {listen} (another edge serve? "
                            f"`edge status --target {listen}` asks it); {fix}")
                if exc.errno == errno.EACCES:
                    return f"server.listen: permission denied binding {listen} (ports below 1024 need privileges); {fix}"
                if exc.errno == errno.EADDRNOTAVAIL:
                    return f"server.listen: {host} is not an address of this machine; {fix}"
                return f"server.listen: cannot bind {listen}: {exc.strerror or exc}; {fix}"
    return None


# A wildcard address is reached from this machine through loopback.
_LOOPBACK = {"": ("127.0.0.1",), "0.0.0.0": ("127.0.0.1",), "::": ("::1", "127.0.0.1")}


async def probe_listener(address: str, timeout_s: float = 1.0) -> str:
    """Whether this machine can connect to a listener the daemon bound: "" when a plain
    connection to `address` (host:port, [v6]:port or unix:PATH; a wildcard host means
    loopback) is accepted within `timeout_s`, else the address tried and the error.
    Nothing is sent: the connection is closed as soon as it is made."""
    if address.startswith("unix:"):
        targets: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (address, lambda: asyncio.open_unix_connection(address[len("unix:"):]))]
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        targets = [(f"[{h}]:{port}" if ":" in h else f"{h}:{port}",
                    lambda h=h: asyncio.open_connection(h, int(port))) for h in _LOOPBACK.get(host, (host,))]
    errors = []
    for shown, connect in targets:
        try:
            _reader, writer = await asyncio.wait_for(connect(), timeout_s)
        except TimeoutError:
            errors.append(f"{shown}: no answer within {timeout_s:g} s")
            continue
        except OSError as exc:
            errors.append(f"{shown}: {os.strerror(exc.errno) if exc.errno else exc}")
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ""
    return "; ".join(errors)


def _bind_unix(server: grpc.aio.Server, path: Path, group: str) -> Path:
    if path.exists() and path.is_socket():
        path.unlink()  # a stale socket from a previous run
    # For on-device apps of the same user only: the socket is created 0600
    # (by umask at bind), never chmod-ed after a window in which others could connect.
    old_umask = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{path}")
    except RuntimeError as exc:
        raise ConfigError(f"server.unix_socket: cannot bind {path}: {exc}") from exc
    finally:
        os.umask(old_umask)
    if group:
        _share_with_group(path, group)
    return path


def _share_with_group(path: Path, group: str) -> None:
    """Open the socket to one group: chown to it, then 0660 (never wider than that)."""
    import grp

    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    except (KeyError, OSError) as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"server.unix_socket_group: cannot give group {group!r} access to {path}: {exc}") from exc


def write_address_file(path: str, addresses: dict[str, str]) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **addresses}), encoding="utf-8")
    os.replace(tmp, path)
