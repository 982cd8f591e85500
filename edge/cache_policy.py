"""The answer cache on the request path: what a request's cache query is, lookups and
stores on the cache's own thread, and a cached answer played back as a backend.

Storage and matching are edge.answer_cache.AnswerCache; this module decides what may be
shared with whom. A request's partition is its tenant (authenticated client) and its
data scope: "local" when the request must stay on the device (LOCAL_ONLY,
routing.local_only, or personal data kept local by the PII guard), "any" otherwise.
CLOUD_ONLY requests never read the cache (they asked for a remote model), but their
answers are stored. With `cache.guard` on, a semantic hit must also pass
edge.cache_guard: a prompt that negates, reverses or renumbers the cached one is a miss.

What may leave the box (`may_leave_box`) is decided here too: with [fleet] share_cache,
edge.fleet.cache shares stored answers through `share` and adds the fleet's with `adopt`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.answer_cache import AnswerCache, CachedAnswer, CacheQuery
from edge.backends.base import Backend, Chunk, GenerationRequest
from edge.cache_guard import meaning_change
from edge.config import Settings
from edge.router.classifier import last_user_message
from edge.types import REMOTE_TIERS, CacheInfo, Preference, Request, ServedBy, Tier

__all__ = ["CachePolicy", "Lookup", "CachedBackend", "may_leave_box", "pieces"]

log = logging.getLogger("edge.cache")


def pieces(text: str) -> list[str]:
    """A cached answer as stream deltas: one word (with its trailing space) each."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


def may_leave_box(query: CacheQuery) -> bool:
    """May this entry be shared with the fleet's other boxes? Only scope "any": scope
    "local" is exactly the requests that must stay on this device (LOCAL_ONLY,
    routing.local_only, personal data the PII guard keeps local), and their answers were
    made from that data, so another box is as far out of bounds as a cloud model."""
    return query.scope == "any"


@dataclass(frozen=True)
class Lookup:
    query: CacheQuery | None          # None: this request neither reads nor writes the cache
    hit: CachedAnswer | None = None
    # A close answer from a remote tier, kept for the degradation path (see Caching.lookup).
    fallback: CachedAnswer | None = None
    vector: Any = None                # the prompt's embedding, reused by store() and the classifier
    tokens: int = 0                   # the encoder's token count for it (the classifier's feature)
    readable: bool = True             # False for CLOUD_ONLY: store, never serve


class CachePolicy:
    def __init__(self, settings: Settings, path: Path, encoder: Any = None) -> None:
        """`encoder`: a SentenceEncoder for semantic matches (None: exact matches only)."""
        c = settings.cache
        self.settings = settings
        self.encoder = encoder if c.semantic else None
        # The guard covers every semantic lookup, the degradation path's looser one too: an
        # answer to "turn off X" is no better for "turn on X" when the network is down.
        self.cache = AnswerCache(path, ttl_s=c.ttl_s, max_entries=c.max_entries, threshold=c.threshold,
                                 embed=self.encoder.embed if self.encoder is not None else None,
                                 guard=meaning_change if c.guard else None)
        # One thread owns the SQLite connection and the in-memory matrices.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache")
        # With [fleet] share_cache: takes (query, answer, embedding) of each stored answer
        # that may leave the box, on the event loop, without waiting (edge.fleet.cache).
        self.share: Callable[[CacheQuery, CachedAnswer, Any], None] | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.cache.close()

    def query(self, req: Request, keep_local: bool) -> CacheQuery:
        g = req.generation
        p = g.params
        local = (keep_local or self.settings.routing.local_only
                 or req.preference == Preference.LOCAL_ONLY)
        params = {"model": req.model, "max_tokens": p.max_tokens, "temperature": p.temperature,
                  "top_p": p.top_p, "stop": list(p.stop), "seed": p.seed}
        return CacheQuery.build(tenant=req.tenant, scope="local" if local else "any",
                                messages=[(m.role, m.content) for m in g.messages], params=params)

    async def lookup(self, req: Request, keep_local: bool) -> Lookup:
        """The hit for this request, if any; on a miss also the closest remote answer at
        cache.fallback_threshold, which the cascade may serve when the local answer is
        unconfident and no remote tier can be reached."""
        q = self.query(req, keep_local)
        if req.preference == Preference.CLOUD_ONLY:
            return Lookup(q, readable=False)

        def run() -> Lookup:
            hit = self.cache.lookup(q, exact_only=True)
            if hit is not None:
                return Lookup(q, hit)
            if self.encoder is None:
                return Lookup(q)
            # The last user message as sent (what the difficulty classifier embeds too, so
            # the engine can reuse this embedding instead of computing it a second time).
            vec, tokens = self.encoder.embed_with_count(last_user_message([(m.role, m.content)
                                                                          for m in req.generation.messages]))
            hit = self.cache.lookup(q, vector=vec)
            fallback = None
            if hit is None:
                fallback = self.cache.lookup(q, vector=vec, threshold=self.settings.cache.fallback_threshold,
                                             tiers=tuple(str(t) for t in REMOTE_TIERS))
            return Lookup(q, hit, fallback, vec, tokens)

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def store(self, found: Lookup, answer: CachedAnswer, *, shareable: bool = True) -> None:
        """Queue the answer for the cache; never blocks or fails the request. `shareable`
        False keeps it off the fleet even in scope "any" (a request the PII guard redacted:
        its prompt and answer hold the personal data as the client sent it)."""
        if found.query is None:
            return
        future = self._pool.submit(self.cache.store, found.query, answer, vector=found.vector)
        future.add_done_callback(lambda f: f.exception() and log.error(
            "cache store failed", extra={"error": str(f.exception())}))
        if self.share is not None and shareable and may_leave_box(found.query):
            self.share(found.query, answer, found.vector)

    def adopt(self, query: CacheQuery, answer: CachedAnswer, *, vector: Any = None, expires: float) -> Future[bool]:
        """Add an answer another box shared (exact and semantic index), unless this box has
        one for the query already; it expires when it does on the box that made it."""
        def run() -> bool:
            if not may_leave_box(query) or self.cache.lookup(query, exact_only=True) is not None:
                return False
            self.cache.store(query, answer, vector=vector if self.encoder is not None else None, expires=expires)
            return True

        return self._pool.submit(run)

    @staticmethod
    def hit_info(hit: CachedAnswer) -> CacheInfo:
        return CacheInfo(match=hit.kind, similarity=hit.similarity, age_s=max(0.0, time.time() - hit.created),
                         original=ServedBy(Tier(hit.tier), hit.backend, hit.model))


class CachedBackend(Backend):
    """A cached answer played back word by word: the cascade's last resort when the
    network is down (it sits after the remote tiers in the chain)."""

    def __init__(self, answer: CachedAnswer) -> None:
        self.name = "cache"
        self.answer = answer

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        a = self.answer
        parts = pieces(a.text)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            yield Chunk(text=part, finish_reason=a.finish_reason if last else None,
                        prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens if last else 0)
