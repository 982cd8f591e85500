"""The backend contract and the data that crosses it."""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edge.backends.admission import AdmissionQueue

__all__ = ["Backend", "Chunk", "GenerationRequest", "Message", "SamplingParams", "ModelDescription", "Timeouts",
           "BackendStats", "LocalModel", "RemoteModel", "ProfileTarget"]


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[Message, ...]
    params: SamplingParams
    request_id: str = ""
    # Absolute time.monotonic() by which the answer must be complete; None = no deadline.
    deadline: float | None = None
    # Whether the caller streams. Remote backends use the provider's streaming API
    # (server-sent events) when True and its unary API when False.
    stream: bool = True
    # Continue this partial assistant answer instead of starting a new one (after
    # a mid-stream failover): the text already sent to the client.
    assistant_prefix: str = ""
    # Ask for the answer's token log-probabilities (Chunk.logprob_mean/logprob_min),
    # where the backend can compute them.
    confidence: bool = False
    # Who asked (the authenticated client; "" = not known): a local model's queue takes
    # turns between clients, and caps how many places one may hold.
    client: str = ""

    def approx_prompt_tokens(self) -> int:
        """A tokenizer-free guess at the prompt's size, about 4 characters a token:
        for decisions made before (or without) the model's own tokenizer."""
        return max(1, sum(len(m.content) for m in self.messages) // 4)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass(frozen=True)
class Chunk:
    """A piece of an answer. The last chunk of a complete answer has `finish_reason` set.

    `completion_tokens` is cumulative: tokens generated so far for this request.
    """

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Seconds the request waited for the generation slot (set by the backend).
    queue_wait_s: float = 0.0
    # Natural-log probabilities of the answer's sampled tokens under the model (0 =
    # certain): their mean and minimum, over the tokens so far on each chunk and over
    # the whole answer on the final one. Set by backends that can compute them, when
    # the request asked for `confidence`.
    logprob_mean: float | None = None
    logprob_min: float | None = None


@dataclass(frozen=True)
class Timeouts:
    """Per-backend time limits in seconds. The effective overall bound of one
    attempt is min(total_s, the caller's remaining deadline)."""

    connect_s: float = 3.0
    first_byte_s: float = 15.0  # request sent -> response headers / first stream event
    idle_s: float = 10.0        # longest gap between two stream events
    total_s: float = 120.0


@dataclass
class ModelDescription:
    name: str
    backend: str
    path: str = ""
    size_bytes: int = 0
    sha256: str = ""
    context_length: int = 0
    n_threads: int = 0


@dataclass
class BackendStats:
    requests_total: int = 0
    rejected_total: int = 0
    cancelled_total: int = 0
    tokens_generated_total: int = 0
    last_completion_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Backend(abc.ABC):
    """Something that turns a GenerationRequest into chunks of text.

    Contract: `generate()` yields chunks in order and ends with one chunk whose
    `finish_reason` is set; it raises an `edge.errors.EdgeError` subclass on
    failure. Closing the iterator early (client cancel) stops the work promptly.
    """

    name: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load what the backend needs (a model file). Called once before traffic."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Called once at shutdown."""


@dataclass(frozen=True)
class ProfileTarget:
    """What the hardware profiler measures a local model by: its file and identity."""

    path: Path
    sha256: str


class LocalModel(Protocol):
    """Everything the daemon uses of a model on this device (edge.backends.threaded
    implements it for llama.cpp and the fake backend)."""

    name: str
    kind: str
    state: str            # loading | ready | failed
    stats: BackendStats

    @property
    def queue(self) -> AdmissionQueue: ...

    @property
    def profile_target(self) -> ProfileTarget | None:
        """The file to profile, or None for a model that has nothing to measure."""

    def describe(self) -> ModelDescription: ...

    def set_threads(self, n: int) -> None:
        """Blocking: switch to `n` threads (the profile's fastest)."""

    async def start(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]: ...

    async def close(self) -> None: ...


class RemoteModel(Protocol):
    """Everything the daemon uses of a model behind an HTTP API (edge.backends.remote)."""

    name: str
    kind: str    # openai | anthropic | gemini: the price table's provider
    model: str

    def describe(self) -> ModelDescription: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]: ...

    async def probe(self, *, timeout_s: float | None = None, strict: bool = False) -> None:
        """Cheap reachability check; raises the classified BackendError when down (with
        `strict`, also when it answers anything but success)."""

    async def close(self) -> None: ...
