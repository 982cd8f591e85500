"""The answer cache: exact and semantic, in SQLite, per tenant and data policy.

Entries are partitioned by (tenant, scope, context): the tenant is the authenticated
client (an answer never crosses tenants), the scope is the data policy ("local" for
requests that must stay on the device, "any" otherwise, so an answer never crosses
that boundary either), and the context is a hash of everything in the request except
the last user message (system prompt, earlier turns, model and sampling parameters).
Within a partition the last user message is matched exactly (after whitespace
normalization) or, failing that, by cosine similarity of its MiniLM embedding
against `threshold`.

A semantic candidate must also pass `guard` when one is given (edge.cache_guard: the
same question, not its negation, reverse or another number); a refused candidate
makes way for the next best. The guard reads each entry's prompt, stored with it;
entries from databases older than that column have none and are never semantic hits
under a guard (exact hits are unaffected).

Each partition's embeddings are kept in memory as one normalized matrix, so a
semantic lookup is one matrix-vector product (about 10k x 384 floats at most); SQLite
holds the entries across restarts. Expired entries are skipped at lookup and purged on
store; past `max_entries` the least recently used go first.

Not thread-safe: the engine calls it from one worker thread.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.private_files import private_state_file

__all__ = ["AnswerCache", "CachedAnswer", "CacheQuery", "normalize"]

DIM = 384  # all-MiniLM-L6-v2


def normalize(text: str) -> str:
    """Whitespace-insensitive form used for exact matching."""
    return " ".join(text.split())


@dataclass(frozen=True)
class CacheQuery:
    tenant: str
    scope: str                 # "local" or "any"
    context: str               # sha256 of the request minus its last user message
    prompt: str                # the last user message, normalized

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.context}\0{self.prompt}".encode()).hexdigest()

    @classmethod
    def build(cls, *, tenant: str, scope: str, messages: Sequence[tuple[str, str]], params: dict[str, Any]) -> CacheQuery:
        """From (role, content) pairs: the last user message is the prompt, the rest the context."""
        last = max(i for i, (role, _) in enumerate(messages) if role == "user")
        rest = [(r, normalize(c)) for i, (r, c) in enumerate(messages) if i != last]
        context = hashlib.sha256(json.dumps({"rest": rest, "last_at": last, "params": params},
                                            sort_keys=True).encode()).hexdigest()
        return cls(tenant, scope, context, normalize(messages[last][1]))


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tier: str                  # the tier that first produced it: local / onprem / cloud
    backend: str
    model: str
    created: float
    kind: str = "exact"        # how this lookup matched: exact or semantic
    similarity: float = 1.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL, scope TEXT NOT NULL, context TEXT NOT NULL, key TEXT NOT NULL,
    embedding BLOB, prompt TEXT,
    text TEXT NOT NULL, finish_reason TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, tier TEXT NOT NULL, backend TEXT NOT NULL, model TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, last_used REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS answers_key ON answers (tenant, scope, key);
CREATE INDEX IF NOT EXISTS answers_partition ON answers (tenant, scope, context);
CREATE INDEX IF NOT EXISTS answers_lru ON answers (last_used);
CREATE INDEX IF NOT EXISTS answers_expiry ON answers (expires);
"""

_COLUMNS = "last_used, text, finish_reason, prompt_tokens, completion_tokens, tier, backend, model, created"


def _migrate(db: sqlite3.Connection) -> None:
    """Databases from before the `prompt` column gain it; their rows keep NULL there."""
    if "prompt" not in {r[1] for r in db.execute("PRAGMA table_info(answers)")}:
        db.execute("ALTER TABLE answers ADD COLUMN prompt TEXT")


class _Partition:
    """One partition's embeddings as a matrix that grows by doubling (an insert or a
    removal costs O(1) amortized, not a copy of the whole matrix)."""

    def __init__(self, ids: list[int], vectors: list[np.ndarray], expires: list[float]) -> None:
        cap = max(16, 2 * len(ids))
        self.n = len(ids)
        self._ids = np.zeros(cap, dtype=np.int64)
        self._vectors = np.zeros((cap, DIM), dtype=np.float32)
        self._expires = np.zeros(cap, dtype=np.float64)
        if ids:
            self._ids[: self.n], self._vectors[: self.n], self._expires[: self.n] = ids, vectors, expires
        self._row = {int(i): r for r, i in enumerate(ids)}

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self.n]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.n]

    @property
    def expires(self) -> np.ndarray:
        return self._expires[: self.n]

    def add(self, row_id: int, vector: np.ndarray, expires: float) -> None:
        if self.n == len(self._ids):
            grow = len(self._ids)
            self._ids = np.concatenate([self._ids, np.zeros(grow, dtype=np.int64)])
            self._vectors = np.concatenate([self._vectors, np.zeros((grow, DIM), dtype=np.float32)])
            self._expires = np.concatenate([self._expires, np.zeros(grow, dtype=np.float64)])
        r = self.n
        self._ids[r], self._vectors[r], self._expires[r] = row_id, vector, expires
        self._row[row_id] = r
        self.n += 1

    def remove(self, row_id: int) -> None:
        r = self._row.pop(int(row_id), None)
        if r is None:
            return
        last = self.n - 1
        if r != last:  # move the last row into the hole
            self._ids[r], self._vectors[r], self._expires[r] = self._ids[last], self._vectors[last], self._expires[last]
            self._row[int(self._ids[r])] = r
        self.n -= 1


# last_used is written at most this often per entry: LRU needs order, not precision,
# and a write per hit would cost more than the lookup.
_TOUCH_EVERY_S = 60.0


class AnswerCache:
    def __init__(self, path: Path | str, *, ttl_s: float, max_entries: int, threshold: float,
                 embed: Callable[[str], np.ndarray] | None = None, clock: Callable[[], float] = time.time,
                 guard: Callable[[str, str], str | None] | None = None) -> None:
        """`embed` maps a prompt to a unit vector; without it only exact matches are served.
        `guard(cached prompt, new prompt)` names why a semantic candidate may not serve
        (None: it may); without it similarity alone decides."""
        self.ttl_s, self.max_entries, self.threshold = ttl_s, max_entries, threshold
        self.embed, self._clock, self.guard = embed, clock, guard
        # Semantic candidates the guard refused, by reason ("no_prompt": a row too old to check).
        self.refused: Counter[str] = Counter()
        # Every tenant's answers: readable by this user only (edge.private_files).
        private_state_file(Path(path), own_dir=False)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        self._partitions: dict[tuple[str, str, str], _Partition] = {}
        self._count = int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    # -- lookup -----------------------------------------------------------------------------

    def vector(self, q: CacheQuery) -> np.ndarray | None:
        """The prompt's embedding (None without an encoder): compute once, pass to lookup and store."""
        return self.embed(q.prompt) if self.embed is not None else None

    def lookup(self, q: CacheQuery, *, threshold: float | None = None, vector: np.ndarray | None = None,
               tiers: Sequence[str] | None = None, exact_only: bool = False) -> CachedAnswer | None:
        """The exact match, else the most similar entry at or above `threshold` (default:
        the cache's) within the query's partition; None on a miss. `vector` is the
        prompt's embedding when the caller has it already; `tiers` restricts which
        producing tiers count (the degradation path wants remote answers only)."""
        now = self._clock()
        tier_sql, tier_args = "", ()
        if tiers is not None:
            tier_sql = f" AND tier IN ({','.join('?' * len(tiers))})"
            tier_args = tuple(tiers)
        row = self._db.execute(
            f"SELECT id, {_COLUMNS} FROM answers WHERE tenant = ? AND scope = ? AND key = ? AND expires > ?{tier_sql}",
            (q.tenant, q.scope, q.key, now, *tier_args)).fetchone()
        if row is not None:
            self._touch(row, now)
            return CachedAnswer(*row[2:], kind="exact", similarity=1.0)
        if exact_only or (self.embed is None and vector is None):
            return None
        return self._semantic(q, now, self.threshold if threshold is None else threshold, vector, tier_sql, tier_args)

    def _semantic(self, q: CacheQuery, now: float, limit: float, vector: np.ndarray | None, tier_sql: str,
                  tier_args: tuple[str, ...]) -> CachedAnswer | None:
        part = self._partition(q)
        if part.ids.size == 0:
            return None
        vec = vector if vector is not None else self.embed(q.prompt)  # type: ignore[misc]
        sims = part.vectors @ vec
        sims[part.expires <= now] = -1.0
        order = np.argsort(-sims)
        for i in order[:8]:  # the best few: the first may be of a tier the caller excludes, or refused
            if sims[i] < limit:
                return None
            row = self._db.execute(f"SELECT id, {_COLUMNS}, prompt FROM answers WHERE id = ?{tier_sql}",
                                   (int(part.ids[i]), *tier_args)).fetchone()
            if row is None:
                continue
            *fields, cached_prompt = row[2:]
            if self.guard is not None:
                reason = "no_prompt" if cached_prompt is None else self.guard(cached_prompt, q.prompt)
                if reason is not None:
                    self.refused[reason] += 1
                    continue
            self._touch(row, now)
            return CachedAnswer(*fields, kind="semantic", similarity=float(sims[i]))
        return None

    def _touch(self, row: tuple[Any, ...], now: float) -> None:
        row_id, last_used = row[0], row[1]
        if now - last_used >= _TOUCH_EVERY_S:
            self._db.execute("UPDATE answers SET last_used = ? WHERE id = ?", (now, row_id))

    def _partition(self, q: CacheQuery) -> _Partition:
        key = (q.tenant, q.scope, q.context)
        part = self._partitions.get(key)
        if part is None:
            rows = self._db.execute("SELECT id, embedding, expires FROM answers WHERE tenant = ? AND scope = ? "
                                    "AND context = ? AND embedding IS NOT NULL", key).fetchall()
            part = _Partition([r[0] for r in rows], [np.frombuffer(r[1], dtype=np.float32) for r in rows],
                              [r[2] for r in rows])
            self._partitions[key] = part
        return part

    # -- store ------------------------------------------------------------------------------

    def store(self, q: CacheQuery, answer: CachedAnswer, *, vector: np.ndarray | None = None,
              expires: float | None = None) -> None:
        """Insert or replace the entry for this query (same tenant, scope and key). `expires`
        (Unix time): an earlier end than this cache's TTL gives, for an entry another box made
        (its TTL runs from when it was made, fleet-wide)."""
        now = self._clock()
        until = now + self.ttl_s if expires is None else min(now + self.ttl_s, expires)
        if vector is None:
            vector = self.vector(q)
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        # The prompt is kept for the guard of semantic hits. No new exposure: the file
        # already holds every tenant's answers, is private to this user, and the prompt
        # goes when its entry does (TTL, LRU, replacement).
        with self._db:
            old = self._db.execute("SELECT id FROM answers WHERE tenant = ? AND scope = ? AND key = ?",
                                   (q.tenant, q.scope, q.key)).fetchone()
            if old is not None:
                self._db.execute("DELETE FROM answers WHERE id = ?", old)
                self._count -= 1
            cur = self._db.execute(
                "INSERT INTO answers (tenant, scope, context, key, embedding, prompt, text, finish_reason, "
                "prompt_tokens, completion_tokens, tier, backend, model, created, expires, last_used) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (q.tenant, q.scope, q.context, q.key, blob, q.prompt, answer.text, answer.finish_reason,
                 answer.prompt_tokens, answer.completion_tokens, answer.tier, answer.backend, answer.model, now,
                 until, now))
            self._count += 1
            self._evict(now)
        part = self._partitions.get((q.tenant, q.scope, q.context))
        if part is None:
            return  # loaded from SQLite on first use
        # Keep the loaded partition in step: one row out (the replaced one), one in.
        if old is not None:
            part.remove(old[0])
        if vector is not None and cur.lastrowid is not None:
            part.add(cur.lastrowid, np.asarray(vector, dtype=np.float32), until)

    def _evict(self, now: float) -> None:
        """Drop expired entries, then the least recently used past max_entries, from SQLite
        and from the loaded partitions."""
        doomed = [r[0] for r in self._db.execute("SELECT id FROM answers WHERE expires <= ?", (now,))]
        over = len(self) - len(doomed) - self.max_entries
        if over > 0:
            doomed += [r[0] for r in self._db.execute(
                "SELECT id FROM answers WHERE expires > ? ORDER BY last_used LIMIT ?", (now, over))]
        if not doomed:
            return
        self._db.executemany("DELETE FROM answers WHERE id = ?", [(i,) for i in doomed])
        self._count -= len(doomed)
        for part in self._partitions.values():
            for row_id in doomed:
                part.remove(row_id)
