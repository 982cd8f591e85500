"""This box in its fleet: the link and what travels over it, started and stopped as one.

The runtime builds one `FleetMember` when [fleet] servers is set: `start()` connects
the link (in the background) and, with daily_budget_usd, puts the shared budget into
the cost gate; `share()` joins the answer cache (share_cache) and the teacher's labels
(share_labels) once those are open. Every part runs on its own task and reads the
link's connection when there is one: nothing here is on a request's path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from edge.config import FleetSettings
from edge.fleet.budget import FleetBudget
from edge.fleet.link import FleetLink, FleetSnapshot

if TYPE_CHECKING:
    from edge.cache_policy import CachePolicy
    from edge.calibration.teacher import Teacher
    from edge.cost_gate import CostGate
    from edge.fleet.cache import FleetCache
    from edge.fleet.labels import FleetLabels

__all__ = ["FleetMember"]

CLOSE_S = 2.0  # how long stopping waits for the fleet's tasks


class FleetMember:
    def __init__(self, settings: FleetSettings, *, describe: Callable[[], dict[str, Any]]) -> None:
        """`describe()`: what this box's heartbeat says about it (version, model, uptime, spend today)."""
        self.settings = settings
        self._describe_box = describe
        self.link = FleetLink(settings, describe=self._describe)
        self.link.pending_source = self._pending
        self.budget: FleetBudget | None = None
        self.cache: FleetCache | None = None
        self.labels: FleetLabels | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def box(self) -> str:
        return self.link.box

    def start(self, cost_gate: CostGate) -> None:
        self.link.start()  # connects on its own task: start never waits for it
        if self.settings.daily_budget_usd > 0:  # spent from a lease: the cost gate reads memory only
            self.budget = FleetBudget(self.link, limit_usd=self.settings.daily_budget_usd,
                                      lease_usd=self.settings.lease_usd)
            cost_gate.fleet = self.budget
            self._spawn(self.budget.run())

    def share(self, cache: CachePolicy | None, teacher: Teacher | None) -> None:
        """Join the fleet's answer cache and pooled labels, as configured (on the event loop)."""
        if self.settings.share_cache and cache is not None:
            from edge.fleet.cache import FleetCache

            self.cache = FleetCache(self.link, cache)
            cache.share = self.cache.share
            self._spawn(self.cache.run())
            self._spawn(self.cache.feed.run())
        if self.settings.share_labels and teacher is not None:
            from edge.fleet.labels import FleetLabels

            self.labels = FleetLabels(self.link, teacher)
            self._spawn(self.labels.run())
            self._spawn(self.labels.feed.run())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work, name="fleet"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a client call that ignored its cancellation must not hold up shutdown
            await asyncio.wait(self._tasks, timeout=CLOSE_S)
        if self.budget is not None:  # its task is stopped (never mid-flush): send what waits, bounded
            await self.budget.drain(self.settings.connect_timeout_s)
        if self.labels is not None:
            self.labels.teacher.on_label = None
        await self.link.close()

    # -- status ---------------------------------------------------------------------------------

    def _pending(self) -> int:
        """Fleet writes waiting for the link: spend events, answers and labels."""
        return sum(part.pending for part in (self.budget, self.cache, self.labels) if part is not None)

    def snapshot(self) -> FleetSnapshot:
        snap, b, c, lab = self.link.snapshot(), self.budget, self.cache, self.labels
        return replace(snap, lease_usd=b.lease_left if b is not None else None,
                       lease_spent_usd=b.spent if b is not None else 0.0,
                       cache_shared=c.shared if c else 0, cache_received=c.received if c else 0,
                       cache_dropped=c.dropped if c else 0,
                       labels_sent=lab.sent if lab else 0, labels_received=lab.received if lab else 0)

    def _describe(self) -> dict[str, Any]:
        """The heartbeat: the box's own description, its lease, and how often it beats."""
        b = self.budget
        return {**self._describe_box(), "heartbeat_s": self.settings.heartbeat_s,
                "lease_usd": round(b.lease_left, 6) if b is not None else None}
