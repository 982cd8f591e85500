"""The calibration store: teacher labels from this deployment's own traffic.

One row per label: when, where it came from (`cascade`: a local answer the gate
escalated, compared with the remote answer that replaced it), the difficulty score and
the gate's confidence figures at the time, whether the local answer would have done
(edge.calibration.agreement) and by which rule, and the prompt's embedding. No prompt
or answer text unless `log_content` is on. Bounded: past `max_labels` the oldest go.
SQLite beside the ledger, 0600; written on its own thread, never on the request path.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.private_files import private_state_file

__all__ = ["Label", "CalibrationStore"]

log = logging.getLogger("edge.calibration")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id          INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,
    source      TEXT    NOT NULL,
    difficulty  REAL,
    conf_mean   REAL,
    conf_min    REAL,
    tokens      INTEGER,
    agrees      INTEGER NOT NULL,
    rule        TEXT    NOT NULL,
    embedding   BLOB,
    prompt      TEXT,
    local_text  TEXT,
    remote_text TEXT
);
"""


@dataclass(frozen=True)
class Label:
    source: str                          # cascade | shadow | import
    agrees: bool                         # would the local answer have done?
    rule: str                            # the agreement rule that decided
    difficulty: float | None = None
    conf_mean: float | None = None
    conf_min: float | None = None
    tokens: int | None = None
    embedding: np.ndarray | None = None
    prompt: str | None = None            # only with log_content
    local_text: str | None = None
    remote_text: str | None = None
    ts: float = 0.0


class CalibrationStore:
    def __init__(self, path: Path, *, max_labels: int = 50_000) -> None:
        self.path, self.max_labels = path, max_labels
        private_state_file(path, own_dir=False)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calibration")

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        with self._lock:
            self._conn.close()

    def add(self, label: Label) -> Future[None]:
        """Queue a label; never blocks or fails the caller (a failed write is logged)."""
        return self.submit(lambda: self._write(label))

    def submit(self, work: Callable[[], None]) -> Future[None]:
        """Run `work` on the store's thread (computing a label, then _write); failures are logged."""
        future = self._writer.submit(work)
        future.add_done_callback(lambda f: f.exception() and log.error(
            "calibration label not stored", extra={"error": str(f.exception())}))
        return future

    def _write(self, label: Label) -> None:
        self.write_many([label])

    def write_many(self, labels: list[Label]) -> None:
        """Blocking (the store's thread): insert labels in one transaction, then keep the cap."""
        rows = [(x.ts or time.time(), x.source, x.difficulty, x.conf_mean, x.conf_min, x.tokens, int(x.agrees), x.rule,
                 None if x.embedding is None else np.asarray(x.embedding, dtype=np.float32).tobytes(), x.prompt,
                 x.local_text, x.remote_text) for x in labels]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")  # one transaction: a fleet catch-up writes thousands
            try:
                self._conn.executemany(
                    "INSERT INTO labels (ts, source, difficulty, conf_mean, conf_min, tokens, agrees, rule, embedding, "
                    "prompt, local_text, remote_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("DELETE FROM labels WHERE id <= (SELECT MAX(id) FROM labels) - ?",
                                   (self.max_labels,))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def remove_source(self, source: str) -> int:
        """Blocking: delete every label from `source` (the fleet's copy, before it is read again)."""
        with self._lock:
            return self._conn.execute("DELETE FROM labels WHERE source = ?", (source,)).rowcount

    def labels(self) -> list[Label]:
        return self.recent(None)

    def recent(self, n: int | None) -> list[Label]:
        """The last `n` labels (None: all), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM (SELECT id, source, agrees, rule, difficulty, conf_mean, conf_min, tokens, embedding, "
                "prompt, local_text, remote_text, ts FROM labels ORDER BY id DESC LIMIT ?) ORDER BY id",
                (-1 if n is None else n,)).fetchall()
            rows = [r[1:] for r in rows]
        return [Label(source=r[0], agrees=bool(r[1]), rule=r[2], difficulty=r[3], conf_mean=r[4], conf_min=r[5],
                      tokens=r[6], embedding=None if r[7] is None else np.frombuffer(r[7], dtype=np.float32),
                      prompt=r[8], local_text=r[9], remote_text=r[10], ts=r[11]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
