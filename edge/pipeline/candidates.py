"""Who may answer: each remote backend's runtime state, the candidates of one request's
chain, and the background probe that brings a dead backend back.

The probe, not a client's request, finds out whether a backend is back:

* An open breaker is probed (a short GET of the model list, PROBE_TIMEOUT_S) every
  probe interval, and once more just before its cooldown ends. If it answers, the next
  request goes through at once (and closes the breaker when it succeeds), before the
  cooldown is over. If the last probe before the cooldown's end fails, the breaker
  re-opens for a longer cooldown, so no client request is sent to a backend that still
  hangs or refuses.
* A backend out of rotation (401/403/404, an account problem) is re-checked with a
  backoff (RECHECK_BASE_S doubling to RECHECK_MAX_S): it comes back when its model list
  answers 2xx, so a transient 404 from a proxy does not remove it until restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from edge.backends.base import Backend, LocalModel, RemoteModel
from edge.resilience import BreakerState, CircuitBreaker
from edge.router.estimates import Ema
from edge.types import Tier

__all__ = ["RemoteState", "Candidate", "probe_once", "probe_loop", "PROBE_TIMEOUT_S"]

log = logging.getLogger("edge.failover")

PROBE_TIMEOUT_S = 2.0    # a probe is a model listing: anything slower is as good as down
RECHECK_BASE_S = 60.0    # first re-check of a backend taken out of rotation
RECHECK_MAX_S = 3600.0


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
    probing: bool = False      # a background probe is in flight
    next_probe_at: float = 0.0  # time.monotonic() when the background probe next looks (0: not running)
    # Set by the probe loop: woken when this breaker opens or the backend leaves rotation,
    # so its probe is scheduled from then, not from the loop's previous tick.
    wake: asyncio.Event | None = field(default=None, repr=False)

    def changed(self) -> None:
        if self.wake is not None:
            self.wake.set()
    recheck_at: float = 0.0    # time.monotonic() of the next re-check while out of rotation
    rechecks: int = 0          # failed re-checks since it left rotation: the backoff's exponent

    @property
    def usable(self) -> bool:
        """Could a request be sent now (in rotation, breaker not open)?"""
        return not self.out_of_rotation and self.breaker.state != BreakerState.OPEN

    def take_out(self, why: str) -> None:
        """Out of rotation until a re-check finds it answering right."""
        self.out_of_rotation, self.rechecks = why, 0
        self.recheck_at = time.monotonic() + RECHECK_BASE_S
        self.changed()

    def recheck_in(self) -> float:
        return max(0.0, self.recheck_at - time.monotonic())


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
    """Probe, concurrently, each open breaker and each out-of-rotation backend due for
    its re-check."""
    due = [st for st in states if _due(st)]
    await asyncio.gather(*(_probe(st) for st in due))


def _due(st: RemoteState) -> bool:
    if st.probing:
        return False
    if st.out_of_rotation:
        return st.recheck_at > 0 and st.recheck_in() <= 0
    return st.breaker.state == BreakerState.OPEN


async def _probe(st: RemoteState) -> None:
    name, rechecking = st.backend.name, bool(st.out_of_rotation)
    st.probing = True
    try:
        await st.backend.probe(timeout_s=PROBE_TIMEOUT_S, strict=rechecking)
    except Exception as exc:  # noqa: BLE001 - a failed probe is the expected case while down
        log.debug("probe failed", extra={"backend": name, "error": str(exc)})
        if rechecking:
            st.rechecks += 1
            st.recheck_at = time.monotonic() + min(RECHECK_BASE_S * 2 ** st.rechecks, RECHECK_MAX_S)
        elif st.breaker.state == BreakerState.OPEN and st.breaker.retry_in() <= PROBE_TIMEOUT_S:
            st.breaker.probe_failed()  # still down as the cooldown ends: no client request probes it
        return
    finally:
        st.probing = False
    if rechecking:
        log.info("re-check succeeded; backend back in rotation", extra={"backend": name,
                                                                         "was": st.out_of_rotation})
        st.out_of_rotation, st.rechecks, st.recheck_at = "", 0, 0.0
        return
    log.info("probe succeeded; backend back in rotation", extra={"backend": name})
    st.breaker.reset_for_probe()


async def probe_loop(states: list[RemoteState], interval_s: float) -> None:
    """Probe what is due, waking every `interval_s` or when a cooldown or re-check nears."""
    wake = asyncio.Event()
    for st in states:
        st.wake = wake
    while True:
        wait = _next_wake(states, interval_s)
        for st in states:
            st.next_probe_at = time.monotonic() + wait
        try:
            await asyncio.wait_for(wake.wait(), timeout=wait)
        except TimeoutError:
            await probe_once(states)
        wake.clear()


def _next_wake(states: list[RemoteState], interval_s: float) -> float:
    waits = [interval_s]
    for st in states:
        if st.out_of_rotation and st.recheck_at > 0:
            waits.append(st.recheck_in())
        elif st.breaker.state == BreakerState.OPEN:
            waits.append(st.breaker.retry_in() - PROBE_TIMEOUT_S)
    return max(0.05, min(waits))
