"""Run a blocking, one-at-a-time generator (a llama.cpp context) off the event loop.

The event loop keeps answering health checks and other RPCs while a model
generates; the model's thread hands chunks back with call_soon_threadsafe.
Admission, cancellation, deadlines and counters are decided here once, for
every backend built on it (the llama backend and the fake one).
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections import deque
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from edge.backends.admission import AdmissionQueue
from edge.backends.base import Backend, BackendStats, Chunk, GenerationRequest, ModelDescription, ProfileTarget
from edge.errors import BackendError, DeadlineExceeded, EdgeError, Overloaded, Unavailable

__all__ = ["ThreadedBackend", "ShouldStop"]

ShouldStop = Callable[[], bool]
# Prompts up to this many characters are prepared on the event loop (see generate()).
INLINE_PREPARE_CHARS = 8192
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadedBackend(Backend):
    """Subclasses implement `_load`, `_prepare` and `_generate_sync`; this class does the rest."""

    kind = "threaded"

    def __init__(self, name: str, *, queue_size: int, queue_per_client: int = 0) -> None:
        self.name = name
        self.state = "loading"
        self.stats = BackendStats()
        self._queue_size = queue_size
        self._queue_per_client = queue_per_client
        self._queue: AdmissionQueue | None = None
        # One worker thread: a llama.cpp context is not thread-safe, so one
        # generation at a time per loaded instance.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gen-{name}")
        self.load_error = ""
        # Set at close(): whatever is still generating after the shutdown grace stops at its next token.
        self._closing = threading.Event()

    # -- what subclasses provide -------------------------------------------------

    @abc.abstractmethod
    def _load(self) -> None:
        """Blocking: load the model. Raise an EdgeError with a clear message on failure."""

    @abc.abstractmethod
    def _prepare(self, request: GenerationRequest) -> Any:
        """Blocking, may run beside a generation: format and tokenize, validate length.

        Raise InvalidArgument for a request the model cannot take.
        """

    @abc.abstractmethod
    def _generate_sync(self, prepared: Any, request: GenerationRequest, should_stop: ShouldStop) -> Iterator[Chunk]:
        """Blocking, on the model's thread: yield chunks; stop promptly once should_stop() is true."""

    @abc.abstractmethod
    def describe(self) -> ModelDescription:
        ...

    @property
    def profile_target(self) -> ProfileTarget | None:
        """None: nothing to profile (the fake backend). Model files override this."""
        return None

    def set_threads(self, n: int) -> None:  # noqa: B027 - only models with threads override it
        """Blocking: switch to `n` threads. A backend without threads ignores it."""

    # -- lifecycle ----------------------------------------------------------------

    @property
    def queue(self) -> AdmissionQueue:
        """Made on first use: its semaphore belongs to the event loop that first uses it."""
        if self._queue is None:
            self._queue = AdmissionQueue(self.name, self._queue_size, self._queue_per_client)
        return self._queue

    async def start(self) -> None:
        if self._queue is None:  # made here, on the loop that will serve it
            self._queue = AdmissionQueue(self.name, self._queue_size, self._queue_per_client)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._load)
        except EdgeError as exc:
            self.state, self.load_error = "failed", str(exc)
            raise
        except Exception as exc:  # a dependency's error: convert where it enters
            self.state, self.load_error = "failed", f"{type(exc).__name__}: {exc}"
            raise BackendError(f"model {self.name!r} failed to load: {self.load_error}") from exc
        self.state = "ready"

    async def close(self) -> None:
        self._closing.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    # -- the request path -----------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        prepared, queue_wait_s = await self._admit(request)
        handoff = _Handoff(asyncio.get_running_loop(), self._closing, request.deadline)
        future = self._start(prepared, request, handoff)
        finished = False
        try:
            # Not merged for a confidence request: the cascade's gate reads the running
            # confidence at an exact token (the end of the first sentence).
            while (item := await handoff.next(merge=not request.confidence)) is not _END:
                if isinstance(item, _Failure):
                    raise self._converted(item.exc)
                if item.finish_reason is not None:
                    finished = True
                    item = replace(item, queue_wait_s=queue_wait_s)
                yield item
            if not finished:
                if request.deadline is not None and time.monotonic() > request.deadline:
                    raise DeadlineExceeded("deadline passed while generating; generation stopped")
                raise BackendError(f"model {self.name!r} stopped without finishing the answer")
        finally:
            if not finished:
                handoff.stop.set()
                if not future.done():
                    self.stats.cancelled_total += 1

    async def _admit(self, request: GenerationRequest) -> tuple[Any, float]:
        """Prepare the prompt, then take the generation slot: (prepared, seconds queued)."""
        if self.state != "ready":
            raise Unavailable(f"model {self.name!r} is {self.state}" + (f": {self.load_error}" if self.load_error else ""))
        self.stats.requests_total += 1
        if sum(len(m.content) for m in request.messages) <= INLINE_PREPARE_CHARS:
            # Templating and tokenizing a short prompt takes well under a
            # millisecond: cheaper than the thread hop, which showed up in TTFT.
            prepared = self._prepare(request)
        else:
            prepared = await asyncio.to_thread(self._prepare, request)
        queued_at = time.monotonic()
        try:
            await self.queue.acquire(request.remaining(), request.client)
        except Overloaded:
            self.stats.rejected_total += 1
            raise
        return prepared, time.monotonic() - queued_at

    def _start(self, prepared: Any, request: GenerationRequest, handoff: _Handoff) -> asyncio.Future[None]:
        """Generate on the model's thread; every chunk, a failure and the end go through `handoff`."""
        def work() -> None:
            tokens = 0
            try:
                for chunk in self._generate_sync(prepared, request, handoff.should_stop):
                    tokens = chunk.completion_tokens
                    handoff.put(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, re-raised there
                handoff.put(_Failure(exc))
            finally:
                self.stats.tokens_generated_total += tokens
                self.stats.last_completion_tokens = tokens
                handoff.put(_END)

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        except BaseException:
            self.queue.release(request.client)
            raise
        # The slot is freed when the model's thread is really done, not when the
        # client goes away: the next request must find the context idle.
        future.add_done_callback(lambda _f: self.queue.release(request.client))
        return future

    def _converted(self, exc: BaseException) -> EdgeError:
        """A failure on the model's thread, as the request path's own error."""
        if isinstance(exc, EdgeError):
            return exc
        error = BackendError(f"model {self.name!r} failed while generating: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


class _Handoff:
    """The model's thread hands chunks to the event loop: put() from the thread, next() on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, closing: threading.Event, deadline: float | None) -> None:
        self._loop, self._closing, self._deadline = loop, closing, deadline
        self._out: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self.stop = threading.Event()  # set on the loop: the client went away

    def should_stop(self) -> bool:
        """Polled by the model's thread before each token."""
        return self.stop.is_set() or self._closing.is_set() or (
            self._deadline is not None and time.monotonic() > self._deadline)

    def put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._push, item)
        except RuntimeError:
            self.stop.set()  # the loop is gone (shutdown): nobody is listening

    def _push(self, item: Any) -> None:  # on the loop
        self._out.append(item)
        self._arrived.set()

    async def next(self, *, merge: bool) -> Any:
        """The next item; with `merge`, text that piled up while the client's last write
        was in flight goes out as one chunk: fewer writes when the reader is slow, no
        added latency when it keeps up."""
        out = self._out
        while not out:
            self._arrived.clear()
            await self._arrived.wait()
        item = out.popleft()
        while (merge and isinstance(item, Chunk) and item.finish_reason is None and out
               and isinstance(out[0], Chunk) and out[0].finish_reason is None):
            nxt = out.popleft()
            # Running values: the later chunk's are those of the merged text.
            item = replace(nxt, text=item.text + nxt.text)
        return item
