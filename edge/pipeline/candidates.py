"""Who may answer: each remote backend's runtime state, the candidates of one request's
chain, and the background probe that brings a dead backend back."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from edge.backends.base import Backend, LocalModel, RemoteModel
from edge.resilience import BreakerState, CircuitBreaker
from edge.router.estimates import Ema
from edge.types import Tier

__all__ = ["RemoteState", "Candidate", "probe_once", "probe_loop"]

log = logging.getLogger("edge.failover")


@dataclass
class RemoteState:
    """Runtime state of one remote backend: its breaker, load and health."""

    backend: RemoteModel
    tier: Tier
    breaker: CircuitBreaker
    outstanding: int = 0
    out_of_rotation: str = ""
    # Use the provider's streaming API even when the client asked for one whole
    # answer: first-byte and idle limits then watch the generation itself, where
    # a unary call only shows its first byte once the whole answer is done.
    stream_upstream: bool = True
    latency_s: Ema = field(default_factory=Ema)  # successful attempts: what the policy predicts with
    requests_total: int = 0
    failures_total: int = 0

    @property
    def usable(self) -> bool:
        """Could a request be sent now (in rotation, breaker not open)?"""
        return not self.out_of_rotation and self.breaker.state != BreakerState.OPEN


@dataclass(frozen=True)
class Candidate:
    """One place a request may be answered, in chain order. `remote` is None for the
    local model (and for a cached answer played back as the cascade's last resort)."""

    name: str
    tier: Tier
    backend: LocalModel | RemoteModel | Backend
    model: str
    remote: RemoteState | None = None


async def probe_once(states: list[RemoteState]) -> None:
    """Check each backend whose breaker is open, cheaply; one that answers lets the next
    request through at once instead of waiting out its cooldown."""
    for st in states:
        if st.out_of_rotation or st.breaker.state != BreakerState.OPEN:
            continue
        try:
            await st.backend.probe()
        except Exception as exc:  # noqa: BLE001 - a failed probe is the expected case while down
            log.debug("probe failed", extra={"backend": st.backend.name, "error": str(exc)})
            continue
        log.info("probe succeeded; backend back in rotation", extra={"backend": st.backend.name})
        st.breaker.reset_for_probe()


async def probe_loop(states: list[RemoteState], interval_s: float) -> None:
    """probe_once every `interval_s`, for as long as the daemon runs."""
    while True:
        await asyncio.sleep(interval_s)
        await probe_once(states)
