"""A bounded, fair queue in front of a single generation slot."""

from __future__ import annotations

import asyncio
from collections import Counter, deque

from edge.errors import DeadlineExceeded, Overloaded

__all__ = ["AdmissionQueue"]


class AdmissionQueue:
    """One request runs, at most `max_waiting` wait; one more is refused at once.

    Refusing at once (rather than queueing without bound) keeps the wait a client sees
    predictable and lets it go elsewhere while it still has time.

    Fair between clients: one named client may hold at most `per_client` places
    (waiting or running), so its flood cannot fill the queue while another client has
    room; and when the slot frees, waiting clients take turns (round robin), so another
    client's request does not wait behind all of the flood's. Requests with no client
    name (a daemon without tokens: every caller is one tenant) share the queue FIFO.
    """

    def __init__(self, name: str, max_waiting: int, per_client: int = 0) -> None:
        self.name = name
        self.max_waiting = max_waiting
        self.per_client = per_client or max(1, (max_waiting + 1) // 2 + 1)
        self.waiting = 0
        self.active = 0
        self._held: Counter[str] = Counter()              # waiting + running, per client
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._turns: deque[str] = deque()                # clients with waiters, in turn order

    async def acquire(self, timeout: float | None, client: str = "") -> None:
        """Take the slot for `client`, waiting at most `timeout` seconds (None = no limit)."""
        if self.active or self.waiting:
            if self.waiting >= self.max_waiting:
                raise Overloaded(
                    f"model {self.name!r} is busy: its queue is full "
                    f"({self.waiting} waiting, limit {self.max_waiting}); retry later")
            if client and self._held[client] >= self.per_client:
                raise Overloaded(
                    f"model {self.name!r}: this client already has {self._held[client]} requests waiting or "
                    f"running (limit {self.per_client} per client); retry later")
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded("deadline passed before the request reached the model")
        self._held[client] += 1
        if not self.active and not self.waiting:
            self.active = 1
            return
        await self._wait_turn(timeout, client)

    async def _wait_turn(self, timeout: float | None, client: str) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(client, deque()).append(turn)
        if client not in self._turns:
            self._turns.append(client)
        self.waiting += 1
        try:
            done, _ = await asyncio.wait({turn}, timeout=timeout)
        except BaseException:  # cancelled while waiting
            if turn.done() and not turn.cancelled():
                self.release(client)  # the slot was handed over just as the caller left: pass it on
            else:
                self._withdraw(client, turn)
            raise
        if not done:
            self._withdraw(client, turn)
            raise DeadlineExceeded(f"deadline passed while waiting in the queue of model {self.name!r}")

    def _withdraw(self, client: str, turn: asyncio.Future[None]) -> None:
        turn.cancel()
        waiters = self._waiters.get(client)
        if waiters is not None and turn in waiters:
            waiters.remove(turn)
            self.waiting -= 1
            if not waiters:
                del self._waiters[client]
                self._turns.remove(client)
        self._forget(client)

    def _forget(self, client: str) -> None:
        self._held[client] -= 1
        if self._held[client] <= 0:
            del self._held[client]

    def release(self, client: str = "") -> None:
        """The running request of `client` is done: hand the slot to the next client in turn."""
        self._forget(client)
        if len(self._turns) > 1 and self._turns[0] == client:
            self._turns.rotate(-1)  # the client that just ran goes after the others
        while self._turns:
            nxt = self._turns.popleft()
            waiters = self._waiters[nxt]
            turn = waiters.popleft()
            self.waiting -= 1
            if waiters:
                self._turns.append(nxt)  # its next request waits for the others' turns
            else:
                del self._waiters[nxt]
            if not turn.done():
                turn.set_result(None)  # the slot passes straight to it: active stays 1
                return
        self.active = 0
