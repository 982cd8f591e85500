"""Breaker transitions and retry timing, on a fake clock: no sleeping."""

from __future__ import annotations

from edge.config import ResilienceSettings
from edge.resilience import BreakerState, CircuitBreaker, retry_delay


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(**kw) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    cfg = ResilienceSettings(breaker_failures=3, breaker_cooldown_s=5, breaker_cooldown_max_s=18,
                             breaker_min_requests=10, breaker_failure_rate=0.5, breaker_window_s=60, **kw)
    return CircuitBreaker(cfg, clock), clock


def test_opens_after_consecutive_failures_and_refuses_at_no_cost():
    b, _ = make()
    for _ in range(2):
        b.record_failure()
    assert b.state == BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state == BreakerState.OPEN
    assert not b.allow() and not b.allow()
    assert b.retry_in() == 5


def test_success_resets_the_consecutive_count():
    b, _ = make()
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state == BreakerState.CLOSED


def test_half_open_lets_exactly_one_probe_through_and_success_closes():
    b, clock = make()
    for _ in range(3):
        b.record_failure()
    clock.t += 5
    assert b.allow()              # the probe
    assert b.state == BreakerState.HALF_OPEN
    assert not b.allow()          # everyone else waits for its verdict
    b.record_success()
    assert b.state == BreakerState.CLOSED and b.allow() and b.allow()


def test_failed_probe_reopens_with_a_longer_cooldown_up_to_the_cap():
    b, clock = make()
    for _ in range(3):
        b.record_failure()
    cooldowns = []
    for _ in range(4):
        cooldowns.append(b.retry_in())
        clock.t += b.retry_in()
        assert b.allow()
        b.record_failure()
    assert cooldowns == [5, 10, 18, 18]  # doubles for a repeat offender, capped
    clock.t += b.retry_in()
    assert b.allow()
    b.record_success()
    for _ in range(3):
        b.record_failure()
    assert b.retry_in() == 5  # a success forgave the past


def test_failure_rate_over_the_window_opens_with_a_minimum_of_requests():
    b, clock = make()
    # Alternate: never 3 in a row, but half of the window fails.
    for i in range(9):
        (b.record_failure if i % 2 else b.record_success)()
        clock.t += 1
    assert b.state == BreakerState.CLOSED  # 9 < min_requests
    b.record_failure()  # 10 outcomes, 5 failures = 50%
    assert b.state == BreakerState.OPEN


def test_old_outcomes_leave_the_window():
    b, clock = make()
    for _ in range(8):
        b.record_failure()
        b.record_success()
    clock.t += 120  # all of that is outside the 60 s window now
    for _ in range(5):
        b.record_success()
    b.record_failure()
    assert b.state == BreakerState.CLOSED


def test_released_probe_lets_the_next_request_probe():
    b, clock = make()
    for _ in range(3):
        b.record_failure()
    clock.t += 5
    assert b.allow()
    b.release_probe()  # the probe's client cancelled: no verdict
    assert b.allow()


def test_active_probe_success_lets_traffic_through_before_the_cooldown_ends():
    b, clock = make()
    for _ in range(3):
        b.record_failure()
    assert not b.allow()
    b.reset_for_probe()
    assert b.allow() and b.state == BreakerState.HALF_OPEN


def test_retry_delay_jitters_under_the_backoff_and_honours_retry_after():
    cfg = ResilienceSettings(backoff_base_s=0.1, backoff_max_s=0.3)
    assert retry_delay(1, cfg, None, rng=lambda a, b: b) == 0.1
    assert retry_delay(2, cfg, None, rng=lambda a, b: b) == 0.2
    assert retry_delay(5, cfg, None, rng=lambda a, b: b) == 0.3  # capped
    assert retry_delay(1, cfg, None, rng=lambda a, b: a) == 0.0  # full jitter reaches 0
    assert retry_delay(1, cfg, 7.0, rng=lambda a, b: b) == 7.0   # never earlier than Retry-After
