"""A bounded queue in front of a single generation slot."""

from __future__ import annotations

import asyncio

from edge.errors import DeadlineExceeded, Overloaded

__all__ = ["AdmissionQueue"]


class AdmissionQueue:
    """One request runs, at most `max_waiting` wait; one more is refused at once.

    Refusing at once (rather than queueing without bound) keeps the wait a
    client sees predictable and lets it go elsewhere while it still has time.
    """

    def __init__(self, name: str, max_waiting: int) -> None:
        self.name = name
        self.max_waiting = max_waiting
        self.waiting = 0
        self.active = 0
        self._slot = asyncio.Semaphore(1)

    async def acquire(self, timeout: float | None) -> None:
        """Take the slot, waiting at most `timeout` seconds (None = no limit)."""
        if self._slot.locked() or self.waiting:
            if self.waiting >= self.max_waiting:
                raise Overloaded(
                    f"model {self.name!r} is busy: its queue is full "
                    f"({self.waiting} waiting, limit {self.max_waiting}); retry later")
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded("deadline passed before the request reached the model")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slot.acquire(), timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"deadline passed while waiting in model {self.name!r}'s queue") from None
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._slot.release()
