"""A GGUF model served with llama.cpp (llama-cpp-python), on CPU or GPU.

llama_cpp is imported when a model is loaded, never when `edge` is imported.
"""

from __future__ import annotations

import codecs
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.backends.base import Chunk, GenerationRequest, Message, ModelDescription, ProfileTarget
from edge.backends.threaded import ShouldStop, ThreadedBackend
from edge.catalog import check_gguf_header
from edge.errors import BackendError, ConfigError, InvalidArgument, ModelCorrupt

__all__ = ["LlamaBackend", "default_threads"]

# llama-cpp-python's own sampling defaults, applied when a request leaves them unset.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05
DEFAULT_REPEAT_PENALTY = 1.0


def _partial_stop_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop sequence."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Index of the earliest stop sequence in text[start:], or None."""
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None


def default_threads() -> int:
    """Physical cores: on the 2-core target, 2 threads measured fastest (README, benchmarks)."""
    import psutil

    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


class _TokenScorer:
    """Log-probability of a sampled token, read from the logits llama.cpp sampled it from.

    With `logits_all=False`, llama-cpp-python 0.3.x no longer copies logits into
    `Llama.scores` after `eval` (that array stays uninitialised); the sampler reads
    them from the context with `llama_get_logits_ith(ctx, -1)`: the output row of
    the last decoded position, the one just before the token being sampled. When
    `Llama.generate()` yields a token nothing has been decoded since it was sampled,
    so that same row is still there. We view it in place (no copy) and compute
    log-softmax at the one sampled token: `logit[tok] - max - log(sum(exp(row - max)))`,
    with one preallocated scratch buffer, so no per-token allocation of the vocab.
    These are the model's own probabilities (temperature 1, before top-k/top-p),
    whatever the request's sampling settings. Model thread only (one scratch buffer).
    """

    def __init__(self, llama_cpp: Any, ctx: Any, n_vocab: int) -> None:
        import numpy as np

        self._np = np
        self._get_logits_ith = llama_cpp.llama_get_logits_ith
        self._ctx = ctx
        self._shape = (n_vocab,)
        self._scratch = np.empty(n_vocab, dtype=np.float32)

    def row(self) -> Any:
        """The last decoded position's logits, as a numpy view into llama.cpp's buffer
        (valid until the next decode)."""
        ptr = self._get_logits_ith(self._ctx, -1)
        if not ptr:
            raise BackendError("llama.cpp has no logits for the last decoded position")
        return self._np.ctypeslib.as_array(ptr, shape=self._shape)

    def logprob(self, token: int) -> float:
        """Natural-log probability of `token` under the current row (<= 0)."""
        np, row, scratch = self._np, self.row(), self._scratch
        top = row.max()
        np.subtract(row, top, out=scratch)
        np.exp(scratch, out=scratch)
        # scratch holds exp(0) = 1 for the top logit, so the sum is >= 1 and the log >= 0.
        return float(row[token] - top) - math.log(float(scratch.sum()))


@dataclass(frozen=True)
class _Prepared:
    tokens: list[int]
    stop: tuple[str, ...]


class _Answer:
    """The answer as its tokens arrive: text detokenized once per token, cut at a stop
    sequence, with a tail that could still grow into one held back; and, when scored,
    the running mean and minimum of the tokens' log-probabilities."""

    def __init__(self, stops: tuple[str, ...], *, n_prompt: int, scored: bool) -> None:
        self.stops, self.n_prompt, self.scored = stops, n_prompt, scored
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text, self.sent, self.n_out = "", 0, 0
        self.finish, self.cut = "length", False
        self._lp_sum, self._lp_min = 0.0, math.inf

    def add(self, piece: bytes, logprob: float | None) -> bool:
        """One token's bytes; True when a stop sequence ended the answer."""
        self.n_out += 1
        if logprob is not None:
            self._lp_sum += logprob
            self._lp_min = min(self._lp_min, logprob)
        self.text += self._decoder.decode(piece)
        at = _find_stop(self.text, self.stops, self.sent)
        if at is None:
            return False
        self.text, self.finish, self.cut = self.text[:at], "stop", True
        return True

    def _confidence(self) -> tuple[float | None, float | None]:
        # An empty answer (end of generation first) has no tokens to score: None.
        if not self.scored or not self.n_out:
            return None, None
        return self._lp_sum / self.n_out, self._lp_min

    def ready(self) -> Chunk | None:
        """Text that can no longer become part of a stop sequence, with the running
        confidence (so a cascade can decide after its first tokens)."""
        safe = len(self.text) - _partial_stop_len(self.text, self.stops)
        if safe <= self.sent:
            return None
        mean, low = self._confidence()
        chunk = Chunk(text=self.text[self.sent:safe], prompt_tokens=self.n_prompt, completion_tokens=self.n_out,
                      logprob_mean=mean, logprob_min=low)
        self.sent = safe
        return chunk

    def end(self) -> Iterator[Chunk]:
        """The rest of the text, then the final chunk."""
        if not self.cut:
            self.text += self._decoder.decode(b"", final=True)  # a dangling partial UTF-8 sequence
        mean, low = self._confidence()
        if len(self.text) > self.sent:
            yield Chunk(text=self.text[self.sent:], prompt_tokens=self.n_prompt, completion_tokens=self.n_out,
                        logprob_mean=mean, logprob_min=low)
        yield Chunk(finish_reason=self.finish, prompt_tokens=self.n_prompt, completion_tokens=self.n_out,
                    logprob_mean=mean, logprob_min=low)


def _primed(messages: tuple[Message, ...], primer: tuple[Message, ...]) -> tuple[Message, ...]:
    """`messages` with the primer after any leading system messages, when no assistant
    turn shows the model how to answer yet."""
    if not primer or any(m.role == "assistant" for m in messages):
        return messages
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    return (*messages[:head], *primer, *messages[head:])


class LlamaBackend(ThreadedBackend):
    kind = "llama"

    def __init__(self, name: str, path: Path, *, sha256: str = "", n_ctx: int = 2048, n_threads: int = 0,
                 n_gpu_layers: int = 0, chat_format: str = "", queue_size: int = 8,
                 queue_per_client: int = 0, primer: tuple[Message, ...] = (),
                 temperature: float = DEFAULT_TEMPERATURE) -> None:
        """`primer`: an example exchange put before the first user turn of a conversation
        that has no assistant turn yet (see Primer in edge.catalog: a small model answers
        in the language and shape it was shown). `temperature`: for requests that set none."""
        super().__init__(name, queue_size=queue_size, queue_per_client=queue_per_client)
        self.primer = primer
        self.temperature = temperature
        self.path = path
        self.sha256 = sha256
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.n_gpu_layers = n_gpu_layers
        self.chat_format = chat_format
        self._llama: Any = None
        self._formatter: Any = None
        self._eog: frozenset[int] = frozenset()
        self._scorer: _TokenScorer | None = None

    def describe(self) -> ModelDescription:
        size = self.path.stat().st_size if self.path.exists() else 0
        return ModelDescription(name=self.name, backend=self.kind, path=str(self.path), size_bytes=size,
                                sha256=self.sha256, context_length=self.n_ctx, n_threads=self.n_threads)

    # -- loading ------------------------------------------------------------------

    def _load(self) -> None:
        # llama.cpp may crash in native code on a file that is not GGUF; refuse it here.
        check_gguf_header(self.path)
        import llama_cpp
        from llama_cpp import llama_chat_format

        try:
            self._llama = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, n_gpu_layers=self.n_gpu_layers, verbose=False)
        except ValueError as exc:  # llama-cpp-python's "failed to load model"
            raise ModelCorrupt(f"model {self.name!r}: llama.cpp could not load {self.path}: {exc}") from exc
        self.n_ctx = self._llama.n_ctx()
        self._formatter = self._make_formatter(llama_cpp, llama_chat_format)
        vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._eog = frozenset(t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t))
        self._scorer = _TokenScorer(llama_cpp, self._llama.ctx, self._llama.n_vocab())

    def _make_formatter(self, llama_cpp: Any, llama_chat_format: Any) -> Any:
        if self.chat_format:
            fn = getattr(llama_chat_format, "format_" + self.chat_format.replace("-", "_"), None)
            if fn is None:
                raise ConfigError(f"model {self.name!r}: chat_format {self.chat_format!r} is not a llama-cpp-python chat format")
            return fn
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"model {self.name!r}: the GGUF has no chat template in its metadata; set chat_format")

        def token_text(token_id: int) -> str:
            return self._llama._model.token_get_text(token_id) if token_id != -1 else ""

        return llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=token_text(self._llama.token_eos()),
            bos_token=token_text(self._llama.token_bos()), stop_token_ids=[self._llama.token_eos()])

    # -- the request path -------------------------------------------------------------

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """The request's prompt in this model's chat template and tokenizer (primer left
        out): an estimate of what a remote server that reports no usage was sent."""
        return len(self._tokenize(request.messages, request.assistant_prefix)[0])

    def _tokenize(self, messages: tuple[Message, ...], prefix: str) -> tuple[list[int], Any]:
        """`messages` in the chat template, then `prefix` (a continuation extends the open
        assistant turn with the text the client already has): (tokens, the formatter's result)."""
        formatted = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        prompt = formatted.prompt + prefix
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True), formatted

    def _prepare(self, request: GenerationRequest) -> _Prepared:
        try:
            tokens, formatted = self._tokenize(_primed(request.messages, self.primer), request.assistant_prefix)
        except Exception as exc:  # the template rejected the conversation (e.g. role order)
            raise InvalidArgument("messages", f"the chat template of model {self.name!r} rejected them: {exc}") from exc
        # At least one token must fit after the prompt.
        if len(tokens) >= self.n_ctx:
            raise InvalidArgument(
                "messages", f"prompt is {len(tokens)} tokens, longer than the "
                            f"context of {self.n_ctx} tokens of model {self.name!r}")
        stop = tuple(s for s in (*request.params.stop, *(formatted.stop or ())) if s)
        return _Prepared(tokens=tokens, stop=stop)

    def _generate_sync(self, prepared: _Prepared, request: GenerationRequest, should_stop: ShouldStop) -> Iterator[Chunk]:
        """Our own decode loop over Llama.generate(): we see every sampled token, so
        token counts are exact, a cancel lands on the next token, and text is
        detokenized once per token (create_completion re-detokenizes the whole
        answer per token).

        With `request.confidence`, each answer token's log-probability is read from
        the logits it was sampled from (see _TokenScorer); their mean and minimum go
        on the final chunk. Without it the loop reads no logits."""
        llama = self._llama
        params = request.params
        scorer = self._scorer if request.confidence else None
        answer = _Answer(prepared.stop, n_prompt=len(prepared.tokens), scored=scorer is not None)
        max_tokens = min(params.max_tokens, self.n_ctx - len(prepared.tokens))
        llama.set_seed(params.seed if params.seed is not None else random.getrandbits(32))
        tokens = llama.generate(
            prepared.tokens,
            temp=self.temperature if params.temperature is None else params.temperature,
            top_p=DEFAULT_TOP_P if params.top_p is None else params.top_p,
            top_k=DEFAULT_TOP_K, min_p=DEFAULT_MIN_P, repeat_penalty=DEFAULT_REPEAT_PENALTY,
        )
        try:
            for token in tokens:
                if should_stop():
                    return
                if token in self._eog:
                    answer.finish = "stop"
                    break
                # Scored before the next iteration: generate() decodes this token only when resumed.
                lp = scorer.logprob(token) if scorer is not None else None
                if answer.add(llama.detokenize([token]), lp) or answer.n_out >= max_tokens:
                    break
                if (chunk := answer.ready()) is not None:
                    yield chunk
        finally:
            tokens.close()
        yield from answer.end()

    @property
    def profile_target(self) -> ProfileTarget | None:
        # Profiles are keyed by the file's sha256: a model given by path without one is not profiled.
        return ProfileTarget(self.path, self.sha256) if self.sha256 else None

    def set_threads(self, n: int) -> None:
        """Switch the loaded context to `n` threads (the profiler's fastest), on the model's thread."""
        import llama_cpp

        def apply() -> None:
            llama_cpp.llama_set_n_threads(self._llama._ctx.ctx, n, n)  # noqa: SLF001 - no public setter
            self._llama.n_threads = self._llama.n_threads_batch = self.n_threads = n

        self._executor.submit(apply).result()

    async def close(self) -> None:
        await super().close()
        if self._llama is not None:
            self._scorer = None
            self._llama.close()
            self._llama = None
