"""The fleet's daily budget, spent by each box from a lease it holds.

The budget of a UTC day lives in the key-value bucket `<fleet>_budget`, key
`day-YYYYMMDD`: {"limit": L, "granted": G}, G being what all boxes have leased so far.
A box reserves a lease (a slice of what is left) with compare-and-set on the key's
revision, so two boxes can never both take the same dollars, and spends from it
locally: the cost gate asks `allows()`, which reads memory only, never the network.
When the lease runs low it is renewed in the background; when it is spent (or the
fleet is away and it runs out), remote candidates are skipped as over budget and the
box answers locally, like a box whose own budget is spent.

Every remote answer's cost is also an event on the stream `<fleet>_spend` (subject
`<fleet>.spend.<box>`, deduplicated by request id), queued while the fleet is away
and sent when it is back: the fleet's record of who spent what.

The lease adapts to the box's spend rate: the first of the day is `lease_usd`, each
later one what the box spent over the last RATE_WINDOW_S, as a rate, times HORIZON_S
(a lease should last about that long), at least the request waiting for it and
MIN_SHARE of `lease_usd`, at most `lease_usd`. A busy box renews less often; a quiet one
holds (and strands, if it stops) little of the day's budget.

Worst case: G never exceeds L; a box admits a remote request only while its lease,
less what requests in flight hold, covers the request's worst-case cost (at
max_tokens), so a box never spends past its lease and the fleet at most L, plus what
an answer costs beyond the estimate it was admitted on (only a prompt longer than 4
characters a token can exceed it). A box that dies with lease left under-spends the
day, never over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.fleet.link import FleetLink

__all__ = ["FleetBudget", "budget_bucket", "budget_key", "spend_stream"]

log = logging.getLogger("edge.fleet")

HOLD_S = 300.0  # a request's hold on the lease lapses after this (longer than any remote attempt)
FLUSH_S = 0.5   # spend events are sent in batches this often ...
FLUSH_EVENTS = 100  # ... or as soon as this many wait
RATE_WINDOW_S = 300.0  # the spend rate is measured over the last five minutes ...
MIN_SPAN_S = 30.0      # ... (or since start, and no less than this, so a first burst is not a rate)
HORIZON_S = 120.0      # a lease should last about this long at that rate
MIN_SHARE = 0.1        # the smallest lease, as a share of lease_usd


def budget_bucket(fleet: str) -> str:
    return f"{fleet}_budget"


def spend_stream(fleet: str) -> str:
    return f"{fleet}_spend"


def _day(now: float) -> str:
    return time.strftime("day-%Y%m%d", time.gmtime(now))


def budget_key(now: float) -> str:
    """The key of the UTC day containing `now` in the budget bucket."""
    return _day(now)


@dataclass
class _Event:
    request_id: str
    cost_usd: float
    ts: float


class FleetBudget:
    def __init__(self, link: FleetLink, *, limit_usd: float, lease_usd: float = 0.0,
                 clock: Any = time.time) -> None:
        self.link, self.limit = link, limit_usd
        self.lease_max = lease_usd or limit_usd / 10  # no lease is larger (the partition bound)
        self.lease_size = self.lease_max  # the lease it would take now (renewed below half)
        self._clock = clock
        self._started = clock()
        self._recent: deque[tuple[float, float]] = deque()  # (time, cost) of recent remote spending
        self._need = 0.0  # the largest request refused since the last lease: the next one covers it
        self.day = _day(clock())
        self.lease_left = 0.0      # what this box may still spend today without asking
        self.leased = 0.0          # what it has reserved today
        self.spent = 0.0           # what it has spent today
        self.exhausted = False     # the fleet has nothing left to lease today
        self._events: deque[_Event] = deque()
        self._holds: dict[str, tuple[float, float]] = {}  # request id -> (estimate held, since)
        self._wake = asyncio.Event()

    # -- the request path (memory only) ------------------------------------------------

    def allows(self, estimate_usd: float, request_id: str) -> tuple[bool, str]:
        """May this request spend up to `estimate_usd` remotely? If so, that much of the
        lease is held for it (so requests in flight together cannot overdraw the lease)
        until `settle()`, or HOLD_S at most."""
        self._roll()
        held_by_others = sum(v for k, (v, _) in self._holds.items() if k != request_id)
        if estimate_usd <= self.lease_left - held_by_others:
            self._holds[request_id] = (max(estimate_usd, self._holds.get(request_id, (0.0, 0.0))[0]), self._clock())
            return True, ""
        if not self.exhausted:
            self._need = max(self._need, estimate_usd)
        self._wake.set()  # renew in the background; this request answers locally
        why = ("the fleet's budget for today is spent" if self.exhausted else
               f"this box's lease of the fleet budget has ${self.lease_left - held_by_others:.6f} free, the "
               f"request may cost ${estimate_usd:.6f} (renewing)")
        return False, why

    def settle(self, request_id: str, cost_usd: float) -> None:
        """The request is over: its hold is released and what it spent remotely (0 for a
        local answer) comes off the lease and goes to the fleet as an event."""
        self._roll()
        self._holds.pop(request_id, None)
        if cost_usd <= 0:
            return
        self.lease_left = max(0.0, self.lease_left - cost_usd)
        self.spent += cost_usd
        self._events.append(_Event(request_id, cost_usd, self._clock()))
        self._recent.append((self._clock(), cost_usd))
        # Events go out in batches, every FLUSH_S (nothing per request on the event loop);
        # a lease running low is renewed at once.
        if self.lease_left < self.lease_size / 2 or len(self._events) >= FLUSH_EVENTS:
            self._wake.set()

    def _expire_holds(self) -> None:
        """Holds of requests that never settled (failed, cancelled) lapse after HOLD_S."""
        now = self._clock()
        for k in [k for k, (_, at) in self._holds.items() if now - at > HOLD_S]:
            del self._holds[k]

    def next_lease(self) -> float:
        """The size of the next lease: the recent spend rate times HORIZON_S, within
        [MIN_SHARE x lease_max, lease_max], and at least the largest request refused;
        lease_max until the box has spent today (no rate to go by yet)."""
        now = self._clock()
        if self.spent == 0 and not self._recent:
            return self.lease_max
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()
        span = min(RATE_WINDOW_S, max(MIN_SPAN_S, now - self._started))
        rate = sum(cost for _, cost in self._recent) / span
        return min(self.lease_max, max(rate * HORIZON_S, self._need, self.lease_max * MIN_SHARE))

    @property
    def pending(self) -> int:
        return len(self._events)

    def _roll(self) -> None:
        day = _day(self._clock())
        if day != self.day:  # a new UTC day: a new budget; yesterday's lease is gone
            self.day, self.lease_left, self.leased, self.spent, self.exhausted = day, 0.0, 0.0, 0.0, False

    # -- the background (the link's own connection) --------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=FLUSH_S)
            except TimeoutError:
                pass
            self._wake.clear()
            self._expire_holds()
            js = self.link.jetstream()
            if js is None:
                continue
            try:
                await self._flush(js)
                self._roll()
                self.lease_size = self.next_lease()
                if self.lease_left < max(self.lease_size / 2, self._need) and not self.exhausted:
                    await self._reserve(js)
            except Exception as exc:  # noqa: BLE001 - the fleet is best effort; try again next round
                log.warning("fleet budget: %s", exc, extra={"error": f"{type(exc).__name__}: {exc}"})

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: send what is queued if the fleet is there (bounded); else it is lost
        with the process, and the fleet's record is short by it (the ledger has it)."""
        js = self.link.jetstream()
        if js is None or not self._events:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._flush(js)
        except Exception as exc:  # noqa: BLE001 - shutting down: say so and go
            log.warning("fleet budget: %d spend events not sent at shutdown", len(self._events),
                        extra={"error": f"{type(exc).__name__}: {exc}"})

    async def _reserve(self, js: Any) -> None:
        """Take min(lease_size, what is left) of today's budget, by compare-and-set."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        kv = await js.create_key_value(bucket=budget_bucket(self.link.settings.name), history=1)
        for _ in range(20):  # lost races with other boxes: read again and retry
            try:
                entry = await kv.get(self.day)
                state, revision = json.loads(entry.value), entry.revision
            except KeyNotFoundError:
                state, revision = {"limit": self.limit, "granted": 0.0}, None
            left = max(0.0, float(state["limit"]) - float(state["granted"]))
            take = min(self.lease_size, left)
            if take <= 0:
                self.exhausted = True
                return
            state["granted"] = float(state["granted"]) + take
            try:  # create() of a key another box just created fails the same way as a stale update()
                if revision is None:
                    await kv.create(self.day, json.dumps(state).encode())
                else:
                    await kv.update(self.day, json.dumps(state).encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            self.lease_left += take
            self.leased += take
            self._need = 0.0
            log.info("fleet budget lease taken", extra={"lease_usd": round(take, 6), "day": self.day,
                                                        "fleet_granted_usd": round(state["granted"], 6)})
            return

    async def _flush(self, js: Any) -> None:
        """Send the queued spend events, oldest first; one that fails stays queued."""
        name = self.link.settings.name
        while self._events:
            e = self._events[0]
            body = {"box": self.link.box, "request_id": e.request_id, "cost_usd": e.cost_usd, "ts": e.ts}
            await js.publish(f"{name}.spend.{self.link.box}", json.dumps(body).encode(), stream=spend_stream(name),
                             headers={"Nats-Msg-Id": f"{self.link.box}:{e.request_id}"})
            self._events.popleft()
