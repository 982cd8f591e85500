"""Routing labels pooled across the fleet, without prompts.

Each label this box's teacher stores (edge.calibration.teacher: a cascade escalation or
a shadow sample) is published on the stream `<fleet>_labels` (subject
`<fleet>.labels.<box>`) as a record of numbers: the prompt's embedding (float32,
base64), the difficulty prior, the answer's confidence (conf_mean, conf_min), its token
count, whether the local answer would have done and by which rule, the label's source,
time and box. Never prompt or answer text: `encode` names each field it sends, and a
label's text fields (kept only with log_content) are not among them.

A box reads the fleet's newest labels (at most its calibration store's cap) when it
first connects, into its store marked source "fleet" (replacing the fleet labels of its
previous run: the stream is their record), then refits, so a fresh box routes by the
fleet's labels instead of the shipped prior; later labels from other boxes follow as
they come (a refit every `refit_every` of them). Labels taken from the fleet are not
published again, and a box skips its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.answer_cache import DIM
from edge.calibration.store import Label
from edge.fleet.feed import Feed, ensure_stream, newest

if TYPE_CHECKING:
    from edge.calibration.teacher import Teacher
    from edge.fleet.link import FleetLink

__all__ = ["FleetLabels", "labels_stream"]

log = logging.getLogger("edge.fleet")

QUEUE = 1000               # labels waiting to be published; past this the newest is dropped
STREAM_KEEPS = 1_000_000   # labels the stream keeps, the oldest going first ...
STREAM_MAX_AGE_S = 90 * 86_400.0  # ... and none older than this (traffic changes)
FLEET = "fleet"            # the source of labels taken from the fleet


def labels_stream(fleet: str) -> str:
    return f"{fleet}_labels"


def _num(x: float | None) -> float | None:
    return None if x is None else float(x)


def encode(box: str, label: Label) -> bytes:
    """The label as the fleet sees it: numbers and verdicts only, never text."""
    emb = None if label.embedding is None else base64.b64encode(
        np.asarray(label.embedding, dtype=np.float32).tobytes()).decode()
    return json.dumps({"v": 1, "box": box, "ts": label.ts, "source": label.source, "rule": label.rule,
                       "agrees": bool(label.agrees), "difficulty": _num(label.difficulty),
                       "conf_mean": _num(label.conf_mean), "conf_min": _num(label.conf_min),
                       "tokens": label.tokens, "embedding": emb}).encode()


def decode(data: bytes) -> tuple[str, Label]:
    """(box, label marked source "fleet"); ValueError if malformed."""
    try:
        d = json.loads(data)
        emb = None if d.get("embedding") is None else np.frombuffer(base64.b64decode(d["embedding"]),
                                                                    dtype=np.float32).copy()
        if emb is not None and emb.shape != (DIM,):
            emb = None  # another encoder's: the fit leaves a label without an embedding out
        if not isinstance(d["agrees"], bool):
            raise ValueError("'agrees' is not a boolean")
        label = Label(source=FLEET, agrees=d["agrees"], rule=str(d.get("rule") or FLEET),
                      difficulty=_num(d.get("difficulty")), conf_mean=_num(d.get("conf_mean")),
                      conf_min=_num(d.get("conf_min")), tokens=None if d.get("tokens") is None else int(d["tokens"]),
                      embedding=emb, ts=float(d.get("ts") or 0.0))
        return str(d["box"]), label
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed fleet label: {exc}") from exc


class FleetLabels:
    def __init__(self, link: FleetLink, teacher: Teacher) -> None:
        """Start it on the event loop: the teacher's hook hands labels over from its thread."""
        self.link, self.teacher = link, teacher
        self.keep = teacher.store.max_labels  # the newest labels read at start
        self._loop = asyncio.get_running_loop()
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._ready = False  # the stream is made or found on this connection
        self.sent = self.received = self.dropped = 0
        self._since_fit = 0
        self._fitted = False  # refit once the first catch-up is in
        name = link.settings.name
        self.feed = Feed(link, stream=labels_stream(name), subject=f"{name}.labels.>", start=self._start,
                         handle=self._handle, prepare=self._prepare)
        teacher.on_label = self.publish

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, label: Label) -> None:
        """The teacher's hook, on the calibration store's thread: queue the label for the fleet."""
        if label.source == FLEET:
            return
        data = encode(self.link.box, label)
        try:
            self._loop.call_soon_threadsafe(self._enqueue, data)
        except RuntimeError:  # the loop is closed: the daemon is stopping
            pass

    def _enqueue(self, data: bytes) -> None:
        if len(self._queue) >= QUEUE:
            self.dropped += 1
            return
        self._queue.append(data)
        self._wake.set()

    async def run(self) -> None:
        """The writer: publishes queued labels while the link is up (they wait while it is not)."""
        name = self.link.settings.name
        while True:
            await self._wake.wait()
            self._wake.clear()
            js = self.link.jetstream()
            try:
                if js is None:
                    raise ConnectionError("fleet away")
                if not self._ready:
                    await self._prepare(js)
                    self._ready = True
                while self._queue:
                    data = self._queue[0]
                    await js.publish(f"{name}.labels.{self.link.box}", data, stream=labels_stream(name),
                                     headers={"Nats-Msg-Id": hashlib.sha256(data).hexdigest()})
                    self._queue.popleft()
                    self.sent += 1
            except Exception as exc:  # noqa: BLE001 - the fleet is best effort; the labels wait
                self._ready = False
                if js is not None:
                    log.info("fleet labels: %s", exc, extra={"error": f"{type(exc).__name__}: {exc}"})
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _prepare(self, js: Any) -> None:
        name = self.link.settings.name
        await ensure_stream(js, name=labels_stream(name), subjects=[f"{name}.labels.>"], max_msgs=STREAM_KEEPS,
                            max_age=STREAM_MAX_AGE_S)

    # -- taking the fleet's labels ------------------------------------------------------------

    async def _start(self, js: Any) -> int:
        """On the first connection: the newest `keep` labels, replacing last run's copy."""
        store = self.teacher.store
        await asyncio.wrap_future(store.submit(lambda: store.remove_source(FLEET)))
        return await newest(js, labels_stream(self.link.settings.name), self.keep)

    async def _handle(self, msgs: list[Any], caught_up: bool) -> None:
        labels = []
        for m in msgs:
            try:
                box, label = decode(m.data)
            except ValueError as exc:
                log.info("fleet labels: %s", exc)
                continue
            if box != self.link.box:
                labels.append(label)
        if labels or (caught_up and not self._fitted):
            await asyncio.wrap_future(self.teacher.store.submit(lambda: self._store(labels, caught_up)))
        self.received += len(labels)

    def _store(self, labels: list[Label], caught_up: bool) -> None:
        """On the store's thread: write, then refit once the first catch-up is in, and
        every refit_every labels after."""
        self.teacher.store.write_many(labels)
        self._since_fit += len(labels)
        first = caught_up and not self._fitted
        if (first and self._since_fit) or self._since_fit >= self.teacher.settings.refit_every:
            self.teacher.refit()
            self._since_fit = 0
        self._fitted = self._fitted or first
