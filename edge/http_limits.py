"""Connection limits for the HTTP door, below the application: what keeps a flood of
half-open connections from taking file descriptors, and every other door, with it.

uvicorn reads a request's head with no deadline and caps concurrency only once a
head has arrived, so a client that connects and never finishes its headers holds a
socket forever. `guarded_protocol` wraps uvicorn's HTTP/1.1 protocol:

- at most `max_connections` open at once, and `max_connections_per_client` from one
  peer address: past either, a new connection is closed as soon as it is accepted;
- a request head (the request line and headers) must arrive whole within
  `header_timeout_s` of the connection opening or of the previous response;
  otherwise the connection is closed.

The request body has its own deadline in the door (edge.http_api).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "guarded_protocol"]

log = logging.getLogger("edge.http")


class ConnectionLimits:
    """Shared by every connection of one HTTP door."""

    def __init__(self, max_connections: int, max_per_client: int, header_timeout_s: float) -> None:
        self.max_connections, self.max_per_client = max_connections, max_per_client
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.by_client: Counter[str] = Counter()
        self.refused_total = 0
        self.timed_out_total = 0
        # (peer host, port) -> the client certificate's identity, for connections that sent one.
        self.identities: dict[tuple[str, int], str] = {}
        self._warned_at = 0.0

    def admit(self, client: str) -> bool:
        if self.open >= self.max_connections or self.by_client[client] >= self.max_per_client:
            self.refused_total += 1
            now = time.monotonic()
            if now - self._warned_at > 10:  # one line per 10 s, whatever the flood's size
                self._warned_at = now
                log.warning("HTTP connections refused: over the limit", extra={
                    "client": client, "open": self.open, "from_client": self.by_client[client],
                    "max_connections": self.max_connections, "max_per_client": self.max_per_client,
                    "refused_total": self.refused_total})
            return False
        self.open += 1
        self.by_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


def _certificate_identity(transport: asyncio.Transport) -> str:
    """'cert:' + the TLS client certificate's common name (else its first DNS name); ''."""
    cert = transport.get_extra_info("peercert")
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return f"cert:{value}"
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    return f"cert:{names[0]}" if names else ""


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with `limits` applied (pass it as uvicorn.Config(http=...))."""

    class Guarded(H11Protocol):
        _peer = ""
        _admitted = False
        _head_timer: asyncio.TimerHandle | None = None
        _waiting_after: Any = None  # the request cycle current when the timer was armed
        _key: tuple[str, int] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else "unix"
            if not limits.admit(self._peer):
                transport.abort()  # before uvicorn sees it: no task, no log line, the descriptor freed now
                return
            self._admitted = True
            self._key = peer[:2] if isinstance(peer, tuple) and len(peer) >= 2 else None
            if self._key is not None and (identity := _certificate_identity(transport)):
                limits.identities[self._key] = identity
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self._admitted:
                return
            self._admitted = False
            self._cancel_head_timer()
            limits.release(self._peer)
            if self._key is not None:
                limits.identities.pop(self._key, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._waiting_after:  # a whole head arrived: a new request began
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_head()  # the next request's head has the same deadline

        def _await_head(self) -> None:
            self._cancel_head_timer()
            self._waiting_after = self.cycle
            self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_late)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self.cycle is self._waiting_after:  # no new request head in time
                limits.timed_out_total += 1
                self.transport.close()

    return Guarded
