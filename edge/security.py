"""The locks on the doors: TLS credentials, bearer tokens, per-client rate limits.

`Gatekeeper` authenticates (when a tokens file is set) and rate-limits (when a rate is
set); every front door asks it. `Guard` puts it in front of every gRPC method except
the health service, which load balancers and supervisors must reach without a
secret. The authenticated client's name is available to the handler as
`current_client()`; rate limits key on it, or on the peer's host without tokens.
"""

from __future__ import annotations

import contextvars
import hmac
import inspect
import ipaddress
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import urllib.parse

import grpc

from edge.config import SecuritySettings
from edge.private_files import check_secret_file
from edge.errors import ConfigError

__all__ = ["Gatekeeper", "Guard", "client_address", "peer_identity", "RateLimiter", "Refusal", "TokenStore", "bearer_token",
           "current_client", "peer_host", "server_credentials"]

log = logging.getLogger("edge.security")

_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("edge_client", default="")
HEALTH_PREFIX = "/grpc.health.v1.Health/"


def current_client() -> str:
    """The authenticated client's name for the RPC being served ("" without a tokens file)."""
    return _CLIENT.get()


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from None


def server_credentials(sec: SecuritySettings) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS with a client CA) from the configured PEM files; None = plaintext."""
    if not sec.tls_cert_file:
        return None
    key = check_secret_file(sec.tls_key_file, "security.tls_key_file").read_bytes()
    cert = _read(sec.tls_cert_file, "security.tls_cert_file")
    ca = _read(sec.tls_client_ca_file, "security.tls_client_ca_file") if sec.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class TokenStore:
    """Bearer tokens from a file: 'client-name token' per line ('#' comments, blank lines
    ignored; a line with only a token names its client 'client-<line number>')."""

    MIN_TOKEN_CHARS = 16

    def __init__(self, path: str) -> None:
        self.path = path
        self._tokens: list[tuple[bytes, str]] = []
        self.reload()

    def reload(self) -> int:
        """Re-read the file; on any problem keep the tokens already loaded and raise ConfigError."""
        p = check_secret_file(self.path, "security.tokens_file")
        tokens: list[tuple[bytes, str]] = []
        for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) > 2:
                raise ConfigError(f"security.tokens_file: {p} line {n}: expected 'client-name token'")
            name, token = (fields[0], fields[1]) if len(fields) == 2 else (f"client-{n}", fields[0])
            if len(token) < self.MIN_TOKEN_CHARS:
                raise ConfigError(f"security.tokens_file: {p} line {n}: token is shorter than "
                                  f"{self.MIN_TOKEN_CHARS} characters")
            for other, other_name in tokens:
                if hmac.compare_digest(other, token.encode("utf-8")):
                    raise ConfigError(f"security.tokens_file: {p} line {n}: the same token as client "
                                      f"{other_name!r}; each client needs its own token")
                if other_name == name:
                    raise ConfigError(f"security.tokens_file: {p} line {n}: client name {name!r} is used twice; "
                                      "two clients would share one tenant (and its cached answers)")
            tokens.append((token.encode("utf-8"), name))
        if not tokens:
            raise ConfigError(f"security.tokens_file: {p} holds no token; every request would be refused")
        self._tokens = tokens
        return len(tokens)

    def authenticate(self, presented: str) -> str | None:
        """The client's name, or None. Compares against every token in constant time per
        token and never stops early, so timing does not tell which prefix or which entry matched."""
        candidate = presented.encode("utf-8", "surrogatepass")
        found = None
        for token, name in self._tokens:
            if hmac.compare_digest(candidate, token) and found is None:
                found = name
        return found


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per client: `rate` requests per second, up to `burst` at once.

    Buckets of clients idle long enough to be full again are forgotten first, so a
    stream of new peer addresses cannot grow memory without bound."""

    MAX_CLIENTS = 10_000

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """Take one request from the client's bucket: 0.0 if allowed, else seconds until it would be."""
        now = self._clock()
        with self._lock:
            b = self._buckets.pop(client, None) or _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            self._buckets[client] = b  # most recently used last
            while len(self._buckets) > self.MAX_CLIENTS:
                self._buckets.popitem(last=False)
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / self.rate


def bearer_token(authorization: str | None) -> str | None:
    """The token of an 'authorization: Bearer <token>' value (gRPC metadata or HTTP header)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def peer_host(peer: str) -> str:
    """The client a gRPC peer string stands for, keyed like client_address():
    'ipv4:10.0.0.7:5123' -> '10.0.0.7', 'ipv6:%5B::1%5D:5123' -> 'local', 'unix:...' -> 'local'."""
    if peer.startswith("unix:"):
        return "local"
    if peer.startswith(("ipv4:", "ipv6:")):
        return client_address(urllib.parse.unquote(peer.split(":", 1)[1].rsplit(":", 1)[0]).strip("[]"))
    return peer or "unknown"


def client_address(host: str) -> str:
    """One name per client machine whatever the door: this device (loopback or the unix
    socket) is 'local', any other host its address. Rate limits and logs key on it, so a
    client gets one bucket across gRPC, the unix socket and HTTP, not one per door."""
    try:
        return "local" if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host or "unknown"


def peer_identity(context: grpc.aio.ServicerContext) -> str:
    """The client certificate's identity under mutual TLS ('cert:' + its common name, or
    its first subject alternative name); '' when the connection presented none."""
    auth = context.auth_context() or {}
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth.get(key)
        if values:
            return "cert:" + values[0].decode("utf-8", "replace")
    return ""


@dataclass(frozen=True)
class Refusal:
    reason: str           # "unauthenticated" or "rate_limited" (the metric label)
    message: str
    retry_after_s: float = 0.0


class Gatekeeper:
    """Authentication then rate limiting, shared by every front door (gRPC, HTTP)."""

    def __init__(self, tokens: TokenStore | None, limiter: RateLimiter | None,
                 on_reject: Callable[[str], None] | None = None) -> None:
        self.tokens, self.limiter = tokens, limiter
        self._on_reject = on_reject or (lambda reason: None)
        self._logged: dict[str, float] = {}   # reason -> when its last log line was written
        self._refused: dict[str, int] = {}    # reason -> refusals since that line

    @property
    def closed(self) -> bool:
        """True when anything is checked at all."""
        return self.tokens is not None or self.limiter is not None

    def admit(self, token: str | None, peer: str) -> tuple[str, Refusal | None]:
        """(client name, None) to let a call in, or (client, Refusal) to turn it away.
        The client is the token's name with a tokens file, else the peer's host."""
        if self.tokens is not None:
            client = self.tokens.authenticate(token) if token else None
            if client is None:
                why = "missing" if token is None else "not valid"
                return self._refuse("", Refusal("unauthenticated", f"bearer token {why}: send "
                                                "'authorization: Bearer <token>'"), peer)
        else:
            client = peer
        if self.limiter is not None:
            wait = self.limiter.acquire(client)
            if wait > 0:
                return self._refuse(client, Refusal(
                    "rate_limited", f"rate limit: {self.limiter.rate:g} requests/s (burst {self.limiter.burst:g}) "
                                    f"per client; retry in {wait:.2f}s", wait), peer)
        return client, None

    def _refuse(self, client: str, refusal: Refusal, peer: str = "") -> tuple[str, Refusal]:
        self._on_reject(refusal.reason)
        now = time.monotonic()
        if now - self._logged.get(refusal.reason, -1e9) > 10:  # one line per reason per 10 s, with a count
            log.warning("call refused at the door", extra={"reason": refusal.reason, "client": client, "peer": peer,
                                                           "since_last_line": self._refused.get(refusal.reason, 0)})
            self._logged[refusal.reason], self._refused[refusal.reason] = now, 0
        else:
            self._refused[refusal.reason] = self._refused.get(refusal.reason, 0) + 1
        return client, refusal


_GRPC_CODES = {"unauthenticated": grpc.StatusCode.UNAUTHENTICATED, "rate_limited": grpc.StatusCode.RESOURCE_EXHAUSTED}


class Guard(grpc.aio.ServerInterceptor):
    """The Gatekeeper in front of every gRPC method but health; see the module docstring."""

    def __init__(self, doors: Gatekeeper) -> None:
        self.doors = doors

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        auth = next((str(v) for k, v in context.invocation_metadata() or () if k == "authorization"), None)
        client, refusal = self.doors.admit(bearer_token(auth), peer_host(context.peer()))
        if refusal is not None:
            trailer = (("retry-after-ms", str(max(1, round(refusal.retry_after_s * 1000)))),) \
                if refusal.retry_after_s else ()
            await context.abort(_GRPC_CODES[refusal.reason], refusal.message, trailing_metadata=trailer)
        # The tenant (cache partition) is the token's name; without tokens everyone is one tenant.
        _CLIENT.set(client if self.doors.tokens is not None else "")

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        kinds = (("unary_unary", grpc.unary_unary_rpc_method_handler),
                 ("unary_stream", grpc.unary_stream_rpc_method_handler),
                 ("stream_unary", grpc.stream_unary_rpc_method_handler),
                 ("stream_stream", grpc.stream_stream_rpc_method_handler))
        for attr, make in kinds:
            inner = getattr(handler, attr)
            if inner is not None:
                return make(self._wrap(inner), request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler

    def _wrap(self, inner: Any) -> Any:
        if inspect.isasyncgenfunction(inner):
            async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._check(context)
                async for item in inner(request, context):
                    yield item
            return streaming

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._check(context)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result
        return unary


def reload_tokens(store: TokenStore) -> None:
    """SIGHUP: re-read the tokens file; a broken file keeps the old tokens (logged)."""
    try:
        n = store.reload()
    except ConfigError as exc:
        log.error("tokens file not reloaded; keeping the previous tokens", extra={"error": str(exc)})
        return
    log.info("tokens reloaded", extra={"tokens": n, "path": os.fspath(store.path)})
