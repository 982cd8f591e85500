"""Following a JetStream stream in the background, across reconnects and server restarts.

A `Feed` reads one stream from a start position it chooses once (the newest N, or only
what comes next), then hands each batch of messages to its handler, in stream order.
It tracks the last stream sequence it handled itself, so a lost connection or a
restarted server costs a new consumer from the next sequence, never a duplicate or a
gap (within what the stream keeps). While the link is down it waits; nothing a request
does ever waits for it.

Also here: creating a stream or key-value bucket that another box may have created
already with other limits (a later box binds to what is there rather than failing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.fleet.link import FleetLink

__all__ = ["Feed", "ensure_kv", "ensure_stream", "kv_entries"]

log = logging.getLogger("edge.fleet")

WAIT_S = 0.5     # how often a feed looks whether the link is back
FETCH_S = 1.0    # one fetch waits this long for new messages before asking again
BATCH = 256      # messages handled at a time
CONSUMER_IDLE_S = 60.0  # the server drops a consumer nobody reads for this long (a box that went away)

Handler = Callable[[list[Any], bool], Awaitable[None]]  # (messages, caught up) -> None
Start = Callable[[Any], Awaitable[int]]                  # (JetStream context) -> first sequence to read


async def ensure_stream(js: Any, **config: Any) -> None:
    """Create the stream, or bind to it when another box created it with other limits."""
    from nats.js.errors import BadRequestError

    try:
        await js.add_stream(**config)
    except BadRequestError:  # "stream name already in use with a different configuration"
        await js.stream_info(config["name"])


async def ensure_kv(js: Any, **config: Any) -> Any:
    """The key-value bucket, created if missing (bound as it is when it exists with other limits)."""
    from nats.js.errors import BadRequestError

    try:
        return await js.create_key_value(**config)
    except BadRequestError:
        return await js.key_value(config["bucket"])


async def kv_entries(js: Any, bucket: str, *, timeout_s: float = 10.0) -> dict[str, bytes]:
    """Every live key's value in a key-value bucket, read from its stream (the last
    message per key) with a consumer of our own: the client's key watcher can mark its
    start before messages already on their way have arrived, and so miss them."""
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE,
                            inactive_threshold=CONSUMER_IDLE_S)
    prefix = f"$KV.{bucket}."
    if (await js.stream_info(f"KV_{bucket}")).state.messages == 0:
        return {}
    sub = await js.pull_subscribe(prefix + ">", stream=f"KV_{bucket}", config=config)
    out: dict[str, bytes] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    msgs = await sub.fetch(BATCH, timeout=FETCH_S)
                except nats.errors.TimeoutError:
                    return out
                for m in msgs:
                    deleted = m.headers and (m.headers.get("KV-Operation") or m.headers.get("Nats-Marker-Reason"))
                    if m.data and not deleted:
                        out[m.subject[len(prefix):]] = m.data
                if msgs[-1].metadata.num_pending == 0:
                    return out
    finally:
        await _drop(sub)


async def newest(js: Any, stream: str, n: int) -> int:
    """The sequence of the stream's n-th newest message (where reading the newest n starts)."""
    state = (await js.stream_info(stream)).state
    return max(state.first_seq or 1, state.last_seq - n + 1, 1)


async def after_last(js: Any, stream: str) -> int:
    """The sequence the stream's next message will have (reading only what comes next)."""
    return (await js.stream_info(stream)).state.last_seq + 1


class Feed:
    def __init__(self, link: FleetLink, *, stream: str, subject: str, start: Start, handle: Handler,
                 prepare: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """`prepare(js)` makes sure the stream exists (run at each connection); `start(js)`
        is asked once, on the first connection, where to begin."""
        self.link, self.stream, self.subject = link, stream, subject
        self._start, self._handle, self._prepare = start, handle, prepare
        self.next_seq: int | None = None  # the next sequence to read; None until the first connection
        self.caught_up = False            # everything the stream held when last asked has been handled
        self.handled = 0

    async def run(self) -> None:
        sub: Any = None
        failures = 0
        while True:
            js = self.link.jetstream()
            if js is None:
                sub = await _drop(sub)
                await asyncio.sleep(WAIT_S)
                continue
            try:
                if sub is None:
                    sub = await self._subscribe(js)
                await self._round(sub)
                failures = 0
            except asyncio.CancelledError:
                await _drop(sub)
                raise
            except Exception as exc:  # noqa: BLE001 - the fleet is best effort: a new consumer next round
                failures += 1
                log.info("fleet feed %s: %s", self.stream, exc, extra={"error": f"{type(exc).__name__}: {exc}"})
                sub = await _drop(sub)
                await asyncio.sleep(min(10.0, WAIT_S * 2 ** min(failures, 5)))

    async def _subscribe(self, js: Any) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        if self._prepare is not None:
            await self._prepare(js)
        if self.next_seq is None:
            self.next_seq = await self._start(js)
        elif (last := (await js.stream_info(self.stream)).state.last_seq) + 1 < self.next_seq:
            self.next_seq = 1  # the stream was made anew (a server that lost its store): read it from its start
            log.warning("fleet feed %s: the stream is shorter than this box had read; reading it again",
                        self.stream, extra={"last_seq": last})
        # An ephemeral consumer without acks: this box keeps its own place (next_seq).
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.next_seq,
                                ack_policy=AckPolicy.NONE, inactive_threshold=CONSUMER_IDLE_S)
        return await js.pull_subscribe(self.subject, stream=self.stream, config=config)

    async def _round(self, sub: Any) -> None:
        import nats.errors

        try:
            msgs = await sub.fetch(BATCH, timeout=FETCH_S)
        except nats.errors.TimeoutError:  # nothing new
            if not self.caught_up:
                self.caught_up = True
                await self._handle([], True)
            return
        last = msgs[-1].metadata
        self.next_seq = last.sequence.stream + 1
        caught_up = last.num_pending == 0
        await self._handle(msgs, caught_up)
        self.handled += len(msgs)
        self.caught_up = self.caught_up or caught_up


async def _drop(sub: Any) -> None:
    if sub is not None:
        try:
            async with asyncio.timeout(1.0):
                await sub.unsubscribe()
        except Exception:  # noqa: BLE001 - its consumer lapses on the server by itself (CONSUMER_IDLE_S)
            pass
    return None
