"""This box's link to its fleet (NATS JetStream), kept in the background.

Contract: nothing on a request's path waits for the fleet. The link connects (and
reconnects, with a backoff) on its own task; while the fleet is away the box serves as
a box alone does, and `snapshot()` says whether the link is up, since when, why not, and
how many fleet writes wait to be sent. A failure of the fleet (unreachable servers, bad
credentials, a server restart) is a status line and a log line, never an error a client
sees.

What travels: a heartbeat per box in the key-value bucket `<fleet>_boxes` (key: the
box's name; value: JSON with its version, default model, uptime, spend today, lease and
the time), so `edge fleet status` and the other boxes see who is there. Nothing a
client sent (prompts, answers) ever leaves the box this way. What else travels over the
link (budget, answers, labels) is edge.fleet.member's to start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.config import FleetSettings

__all__ = ["FleetLink", "FleetSnapshot", "boxes_bucket", "connect_options", "describe_error", "server_name"]

log = logging.getLogger("edge.fleet")

_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class FleetSnapshot:
    fleet: str
    box: str
    connected: bool
    since: float          # Unix time of the last change between connected and not
    server: str = ""      # the server it is connected to
    last_error: str = ""  # why it is not (or was last not) connected
    pending: int = 0      # fleet writes waiting for the link
    heartbeats_sent: int = 0
    lease_usd: float | None = None  # what is left of this box's lease of the fleet budget (None: no fleet budget)
    lease_spent_usd: float = 0.0    # what it spent from leases today
    cache_shared: int = 0           # answers this box shared with the fleet ...
    cache_received: int = 0         # ... took from it ...
    cache_dropped: int = 0          # ... and could not queue (the queue was full)
    labels_sent: int = 0            # routing labels published (numbers only) ...
    labels_received: int = 0        # ... and taken from the fleet


def boxes_bucket(fleet: str) -> str:
    return f"{fleet}_boxes"


class FleetLink:
    def __init__(self, settings: FleetSettings, *, describe: Callable[[], dict[str, Any]]) -> None:
        """`describe()`: what this box's heartbeat says about it (version, model, uptime)."""
        self.settings = settings
        self.box = settings.box or socket.gethostname()
        self._describe = describe
        self._nc: Any = None
        self._kv: Any = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._since = time.time()
        self._server = ""
        self._last_error = ""
        self._heartbeats = 0
        self.pending_source: Callable[[], int] = lambda: 0  # fleet writes waiting (the budget's spend events)

    # -- status ---------------------------------------------------------------------

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(fleet=self.settings.name, box=self.box, connected=self._connected, since=self._since,
                             server=self._server, last_error=self._last_error, pending=self.pending_source(),
                             heartbeats_sent=self._heartbeats)

    def _set_connected(self, up: bool, error: str = "") -> None:
        if up != self._connected:
            self._since = time.time()
            self._connected = up
            if up:
                log.info("fleet connected", extra={"fleet": self.settings.name, "box": self.box,
                                                   "server": self._server})
            else:
                log.warning("fleet disconnected; serving as a box alone", extra={
                    "fleet": self.settings.name, "box": self.box, "error": error or self._last_error})
        if error:
            self._last_error = error

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleet-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                async with asyncio.timeout(1.0):
                    await nc.close()
            except Exception:  # noqa: BLE001 - closing a link that is down: nothing to save
                pass

    async def _run(self) -> None:
        attempt = 0
        while True:
            if self._nc is None:
                try:
                    await self._connect()
                    attempt = 0
                except Exception as exc:  # noqa: BLE001 - the fleet is best effort
                    self._set_connected(False, describe_error(exc, self.settings))
                    await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
                    attempt += 1
                    continue
            await self._heartbeat()
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _connect(self) -> None:
        import nats

        s = self.settings
        nc = await nats.connect(**connect_options(s, f"edge:{self.box}"), allow_reconnect=True,
                                max_reconnect_attempts=-1, reconnect_time_wait=1.0,
                                disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                                error_cb=self._on_error, closed_cb=self._on_closed)
        try:
            js = nc.jetstream()
            self._kv = await js.create_key_value(bucket=boxes_bucket(s.name), history=1)
            await js.add_stream(name=f"{s.name}_spend", subjects=[f"{s.name}.spend.>"])
        except Exception:
            await nc.close()
            raise
        self._nc = nc
        self._server = server_name(nc)
        self._set_connected(True)

    def jetstream(self) -> Any:
        """The JetStream context while connected, else None (callers skip their round)."""
        return self._nc.jetstream() if self._connected and self._nc is not None else None

    async def _heartbeat(self) -> None:
        if not self._connected or self._kv is None:
            return
        beat = {"box": self.box, "ts": time.time(), **self._describe()}
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await self._kv.put(self.box, json.dumps(beat).encode())
            self._heartbeats += 1
        except Exception as exc:  # noqa: BLE001 - a missed heartbeat is the next one's business
            self._last_error = f"heartbeat: {type(exc).__name__}: {exc}"

    # -- the client's callbacks (on the event loop) -----------------------------------

    async def _on_disconnected(self) -> None:
        self._set_connected(False, "connection lost")

    async def _on_reconnected(self) -> None:
        if self._nc is not None:
            self._server = server_name(self._nc)
        self._set_connected(True)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = describe_error(exc, self.settings)
        log.warning("fleet link error", extra={"error": self._last_error})

    async def _on_closed(self) -> None:
        self._set_connected(False, "connection closed")


def connect_options(s: FleetSettings, name: str) -> dict[str, Any]:
    """What nats.connect needs to reach the fleet: servers, timeout, credentials, TLS."""
    options: dict[str, Any] = {"servers": list(s.servers), "connect_timeout": s.connect_timeout_s, "name": name}
    if s.creds_file:
        options["user_credentials"] = s.creds_file
    tls = _tls_context(s)
    if tls is not None:
        options["tls"] = tls
    return options


def server_name(nc: Any) -> str:
    """host:port of the server the client is connected to ("" when it is not)."""
    url = getattr(nc, "connected_url", None)
    return f"{url.hostname}:{url.port}" if url is not None and url.hostname else ""


def _tls_context(s: FleetSettings) -> Any:
    if not (s.tls_ca_file or s.tls_cert_file):
        return None
    import ssl

    ctx = ssl.create_default_context(cafile=s.tls_ca_file or None)
    if s.tls_cert_file:
        ctx.load_cert_chain(s.tls_cert_file, s.tls_key_file or None)
    return ctx


def describe_error(exc: BaseException, s: FleetSettings) -> str:
    """One line: what failed, by the client's exception type, and the fix; no password
    a server URL carries."""
    line = _describe(exc, s)
    for url in s.servers:
        line = line.replace(url, _redacted(url))
    return line


def _describe(exc: BaseException, s: FleetSettings) -> str:
    import nats.errors

    text = str(exc) or type(exc).__name__
    # A refused login reaches the client as the protocol's own -ERR 'Authorization
    # Violation' (the NATS protocol's error token, as an HTTP status is), wrapped in a
    # plain nats Error by nats-py 2.16; its own AuthorizationError where it has one.
    refused = "authorization violation" in text.lower()
    if refused or isinstance(exc, (nats.errors.AuthorizationError, nats.errors.InvalidUserCredentialsError)):
        where = (f"check [fleet] creds_file ({s.creds_file})" if s.creds_file
                 else "the servers want credentials: set [fleet] creds_file")
        return f"authorization refused by the fleet's servers ({text}); {where}"
    if isinstance(exc, (nats.errors.NoServersError, OSError, TimeoutError, nats.errors.TimeoutError)):
        return f"no fleet server reachable at {', '.join(_redacted(u) for u in s.servers)} ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"


def _redacted(url: str) -> str:
    """A server URL without the user and password it may carry (they go in no log or status)."""
    scheme, sep, rest = url.partition("://")
    host = rest.rpartition("@")[2]
    return f"{scheme}{sep}{host}" if sep else url.rpartition("@")[2]
