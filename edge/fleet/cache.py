"""The fleet's shared answer cache: an answer one box stored can answer the same request
on another.

What travels: an answer that may leave its box (edge.cache_policy.may_leave_box: scope
"any", and no personal data found in the request) with what keys it (tenant, scope,
the context hash, the normalized last user message), its expiry and the prompt's
embedding. The cache is answers, so for these entries the text does travel; answers of
local-only requests, of requests whose personal data the PII guard kept local, and of
redacted ones never leave the box.

Where: the key-value bucket `<fleet>_cache` holds the fleet's live entries, one per
key (a hash of tenant, scope and the query's key), with the bucket's TTL; each new entry
is also announced on the stream `<fleet>_cache_new`. A box reads the bucket once when
it first connects (the fleet's entries so far), then follows the stream, and adds each
entry to its own AnswerCache, exact and semantic index, expiring when it does on the box
that made it (each entry carries its expiry, checked again when it arrives).

The request path never waits on the fleet: lookups read the local cache only, which
already holds what the fleet announced (an in-memory mirror of the stream would cover
only the moment between an announcement's arrival and its write, on the cache's own
thread). Writes go through a bounded queue to a background task; when it is full the
newest is dropped and counted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.answer_cache import DIM, CachedAnswer, CacheQuery
from edge.fleet.feed import Feed, after_last, ensure_kv, ensure_stream, kv_entries

if TYPE_CHECKING:
    from edge.cache_policy import CachePolicy
    from edge.fleet.link import FleetLink

__all__ = ["FleetCache", "cache_bucket", "cache_stream"]

log = logging.getLogger("edge.fleet")

QUEUE = 1000            # answers waiting to be shared; past this the newest is dropped
STREAM_KEEPS = 100_000  # announcements the stream keeps (they also age out with the TTL)
CATCH_UP_S = 10.0       # bound on reading the bucket when this box first connects


def cache_bucket(fleet: str) -> str:
    return f"{fleet}_cache"


def cache_stream(fleet: str) -> str:
    return f"{fleet}_cache_new"


def fleet_key(q: CacheQuery) -> str:
    """The entry's key in the bucket: tenant and scope are in it, so no two tenants' entries meet."""
    return hashlib.sha256(f"{q.tenant}\0{q.scope}\0{q.key}".encode()).hexdigest()


def encode(box: str, q: CacheQuery, a: CachedAnswer, vector: Any, expires: float) -> bytes:
    vec = None if vector is None else base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()
    return json.dumps({"v": 1, "box": box, "tenant": q.tenant, "scope": q.scope, "context": q.context,
                       "prompt": q.prompt, "text": a.text, "finish_reason": a.finish_reason,
                       "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens, "tier": a.tier,
                       "backend": a.backend, "model": a.model, "created": a.created, "expires": expires,
                       "vector": vec}).encode()


def decode(data: bytes) -> tuple[str, CacheQuery, CachedAnswer, Any, float]:
    """(box, query, answer, embedding or None, expiry) of an encoded entry; ValueError if malformed."""
    try:
        d = json.loads(data)
        q = CacheQuery(str(d["tenant"]), str(d["scope"]), str(d["context"]), str(d["prompt"]))
        a = CachedAnswer(text=str(d["text"]), finish_reason=str(d["finish_reason"]),
                         prompt_tokens=int(d["prompt_tokens"]), completion_tokens=int(d["completion_tokens"]),
                         tier=str(d["tier"]), backend=str(d["backend"]), model=str(d["model"]),
                         created=float(d["created"]))
        vec = None if d.get("vector") is None else np.frombuffer(base64.b64decode(d["vector"]), dtype=np.float32)
        if vec is not None and vec.shape != (DIM,):
            vec = None  # another encoder's: this box embeds the prompt itself
        return str(d["box"]), q, a, vec, float(d["expires"])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed fleet cache entry: {exc}") from exc


class FleetCache:
    def __init__(self, link: FleetLink, policy: CachePolicy, *, clock: Any = time.time) -> None:
        self.link, self.policy, self._clock = link, policy, clock
        self.ttl_s = policy.settings.cache.ttl_s
        self._queue: deque[tuple[str, bytes]] = deque()  # (key in the bucket, entry)
        self._wake = asyncio.Event()
        self._kv: Any = None  # the bucket, once made or found on this connection
        self.shared = self.received = self.dropped = 0
        name = link.settings.name
        self.feed = Feed(link, stream=cache_stream(name), subject=f"{name}.cache.new", start=self._start,
                         handle=self._handle, prepare=self._prepare)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- sharing (called on the event loop by CachePolicy.store) --------------------------

    def share(self, q: CacheQuery, answer: CachedAnswer, vector: Any) -> None:
        if len(self._queue) >= QUEUE:
            self.dropped += 1
            return
        self._queue.append((fleet_key(q), encode(self.link.box, q, answer, vector, self._clock() + self.ttl_s)))
        self._wake.set()

    async def run(self) -> None:
        """The writer: sends queued entries while the link is up (they wait while it is not)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            js = self.link.jetstream()
            if js is None:
                await asyncio.sleep(0.5)
                self._wake.set()
                continue
            try:
                if self._kv is None:
                    self._kv = await self._prepare(js)
                while self._queue:
                    await self._send(js, self._kv, *self._queue[0])
                    self._queue.popleft()
            except Exception as exc:  # noqa: BLE001 - the fleet is best effort; the entry waits for the next round
                self._kv = None  # made again next round (a server may have lost its store)
                log.info("fleet cache: %s", exc, extra={"error": f"{type(exc).__name__}: {exc}"})
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _send(self, js: Any, kv: Any, key: str, data: bytes) -> None:
        await kv.put(key, data)
        name = self.link.settings.name
        await js.publish(f"{name}.cache.new", data, stream=cache_stream(name),
                         headers={"Nats-Msg-Id": hashlib.sha256(data).hexdigest()})
        self.shared += 1

    async def _prepare(self, js: Any) -> Any:
        name = self.link.settings.name
        await ensure_stream(js, name=cache_stream(name), subjects=[f"{name}.cache.new"], max_msgs=STREAM_KEEPS,
                            max_age=self.ttl_s)
        return await ensure_kv(js, bucket=cache_bucket(name), history=1, ttl=self.ttl_s)

    # -- taking the fleet's entries --------------------------------------------------------

    async def _start(self, js: Any) -> int:
        """On the first connection: where the stream is now, then every live entry in the
        bucket (what was announced before this box was there); the stream from that point."""
        name = self.link.settings.name
        seq = await after_last(js, cache_stream(name))  # the feed made the stream and the bucket first
        for data in (await kv_entries(js, cache_bucket(name), timeout_s=CATCH_UP_S)).values():
            await self._adopt(data)
        return seq

    async def _handle(self, msgs: list[Any], caught_up: bool) -> None:
        for m in msgs:
            await self._adopt(m.data)

    async def _adopt(self, data: bytes | None) -> None:
        if not data:
            return
        try:
            box, q, answer, vector, expires = decode(data)
        except ValueError as exc:
            log.info("fleet cache: %s", exc)
            return
        if box == self.link.box or expires <= self._clock():
            return  # its own (in its cache already), or past its time fleet-wide
        if await asyncio.wrap_future(self.policy.adopt(q, answer, vector=vector, expires=expires)):
            self.received += 1
