"""Circuit breakers and retry timing: how edge stops hurting itself on a dead backend.

Pure logic with an injectable clock, so every transition is testable without sleeping.
The network monitor that probes open breakers lives in edge.pipeline.candidates, which owns the
backends.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import ResilienceSettings

__all__ = ["BreakerState", "CircuitBreaker", "Clock", "retry_delay"]

Clock = Callable[[], float]


class BreakerState:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Outcome:
    at: float
    ok: bool


class CircuitBreaker:
    """Closed -> open on `breaker_failures` consecutive failures, or on a failure rate
    of `breaker_failure_rate` over `breaker_window_s` once the window holds
    `breaker_min_requests`. Open for a cooldown that doubles each time it re-opens
    without a success in between, up to `breaker_cooldown_max_s`. After the cooldown,
    half-open lets exactly one probe request through: success closes, failure re-opens.

    `allow()` is O(1) and never waits: an open breaker costs a request no time.
    """

    def __init__(self, settings: ResilienceSettings, clock: Clock = time.monotonic) -> None:
        self.cfg = settings
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.open_until = 0.0
        self.opened_total = 0
        self._level = 0  # re-opens since the last close: the cooldown's exponent
        self._probe_in_flight = False
        self._window: deque[_Outcome] = deque()

    # -- queries --------------------------------------------------------------------

    def allow(self) -> bool:
        """May a request go to this backend now? In half-open, only the first caller gets True."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            if self._clock() < self.open_until:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def retry_in(self) -> float:
        """Seconds until an open breaker will let a probe through (0 when it would now)."""
        return max(0.0, self.open_until - self._clock()) if self.state == BreakerState.OPEN else 0.0

    @property
    def cooldown_s(self) -> float:
        return min(self.cfg.breaker_cooldown_s * (2 ** self._level), self.cfg.breaker_cooldown_max_s)

    # -- outcomes -------------------------------------------------------------------

    def record_success(self) -> None:
        self._remember(True)
        self.consecutive_failures = 0
        if self.state != BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._level = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._remember(False)
        self.consecutive_failures += 1
        if self.state == BreakerState.HALF_OPEN:
            self._level += 1  # a repeat offender: the next cooldown is longer
            self._open()
        elif self.state == BreakerState.CLOSED and (
                self.consecutive_failures >= self.cfg.breaker_failures or self._rate_exceeded()):
            self._open()

    def release_probe(self) -> None:
        """The half-open probe ended without a verdict (e.g. the client cancelled)."""
        self._probe_in_flight = False

    def probe_failed(self) -> None:
        """A background probe found the backend still down as its cooldown ends: stay open,
        for longer, rather than let a client's request find out the slow way."""
        if self.state == BreakerState.OPEN:
            self._level += 1
            self.open_until = self._clock() + self.cooldown_s

    def reset_for_probe(self) -> None:
        """An active probe found the backend reachable: let the next request through now."""
        if self.state == BreakerState.OPEN:
            self.open_until = self._clock()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self.open_until = self._clock() + self.cooldown_s
        self.opened_total += 1
        self._probe_in_flight = False

    def _remember(self, ok: bool) -> None:
        now = self._clock()
        self._window.append(_Outcome(now, ok))
        horizon = now - self.cfg.breaker_window_s
        while self._window and self._window[0].at < horizon:
            self._window.popleft()

    def _rate_exceeded(self) -> bool:
        n = len(self._window)
        if n < self.cfg.breaker_min_requests:
            return False
        failures = sum(1 for o in self._window if not o.ok)
        return failures / n >= self.cfg.breaker_failure_rate


def retry_delay(attempt: int, settings: ResilienceSettings, retry_after: float | None,
                rng: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before retry number `attempt` (1-based): full jitter over an
    exponential backoff, but never less than the provider's Retry-After."""
    ceiling = min(settings.backoff_base_s * (2 ** (attempt - 1)), settings.backoff_max_s)
    jittered = rng(0.0, ceiling) if ceiling > 0 else 0.0
    return max(jittered, retry_after or 0.0)
