"""A deterministic backend that needs no model file, for tests and demos.

It runs on the same thread hand-off, queue and cancellation path as the llama
backend, so server behaviour tested with it is the behaviour users get.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from edge.backends.base import Chunk, GenerationRequest, ModelDescription
from edge.backends.threaded import ShouldStop, ThreadedBackend
from edge.errors import InvalidArgument

__all__ = ["FakeBackend"]


def _words(text: str) -> list[str]:
    """Split into 'tokens' that join back to the text exactly (a word and its leading space)."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return [w for w in out if w]


class FakeBackend(ThreadedBackend):
    """Replies with `reply` (or echoes the last user message), one word per token.

    `token_delay_s` sleeps before each token and `load_delay_s` once at load, to
    make queues, deadlines, cancellation and health transitions observable. Prompt tokens are whitespace-separated words.
    """

    kind = "fake"

    def __init__(self, name: str = "fake", *, reply: str = "", token_delay_s: float = 0.0,
                 load_delay_s: float = 0.0, n_ctx: int = 2048, queue_size: int = 8, queue_per_client: int = 0,
                 logprob: float | Sequence[float] | None = None) -> None:
        super().__init__(name, queue_size=queue_size, queue_per_client=queue_per_client)
        # Reported to requests that ask for confidence: one value for every token, or one
        # per token in order (the last repeats), so a test can script a confident first
        # sentence followed by unsure text.
        self.logprobs: tuple[float, ...] | None = (
            None if logprob is None else (float(logprob),) if isinstance(logprob, (int, float)) else tuple(logprob))
        if self.logprobs is not None and not self.logprobs:
            raise ValueError("logprob: give at least one value")
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.n_ctx = n_ctx
        self.load_delay_s = load_delay_s

    def _load(self) -> None:
        time.sleep(self.load_delay_s)

    def describe(self) -> ModelDescription:
        return ModelDescription(name=self.name, backend=self.kind, context_length=self.n_ctx, n_threads=1)

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return sum(len(m.content.split()) + 2 for m in request.messages)

    def _prepare(self, request: GenerationRequest) -> int:
        prompt_tokens = sum(len(m.content.split()) + 2 for m in request.messages)
        if prompt_tokens >= self.n_ctx:
            raise InvalidArgument(
                "messages", f"prompt is {prompt_tokens} tokens, longer than the "
                            f"context of {self.n_ctx} tokens of model {self.name!r}")
        return prompt_tokens

    def _generate_sync(self, prepared: int, request: GenerationRequest, should_stop: ShouldStop) -> Iterator[Chunk]:
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        text = self.reply or last_user
        if request.assistant_prefix and text.startswith(request.assistant_prefix):
            text = text[len(request.assistant_prefix):]  # continue the partial answer
        for stop in request.params.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        tokens = _words(text)
        budget = min(request.params.max_tokens, self.n_ctx - prepared)
        for n, token in enumerate(tokens[:budget], start=1):
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            if should_stop():
                return
            yield Chunk(text=token, prompt_tokens=prepared, completion_tokens=n, **self._confidence(request, n))
        emitted = min(len(tokens), budget)
        finish = "length" if len(tokens) > budget else "stop"
        yield Chunk(finish_reason=finish, prompt_tokens=prepared, completion_tokens=emitted,
                    **self._confidence(request, emitted))

    def _confidence(self, request: GenerationRequest, n: int) -> dict[str, float]:
        """Running mean and minimum over the first `n` tokens, as LlamaBackend reports them."""
        if not request.confidence or self.logprobs is None or n == 0:
            return {}
        script = self.logprobs[:n]  # the last value repeats for the tokens past the script
        return {"logprob_mean": (sum(script) + (n - len(script)) * script[-1]) / n, "logprob_min": min(script)}
