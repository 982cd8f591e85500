"""The request path behind every front door: decide, generate, summarize.

validate (edge.validation) -> decide (edge.router) -> backend.generate -> Result.
The gRPC server (and later front doors) only translate to and from the wire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.backends.base import ModelDescription
from edge.backends.fake import FakeBackend
from edge.backends.threaded import ThreadedBackend
from edge.catalog import default_models_dir, load_manifest, verify_file
from edge.config import ModelEntry, Settings
from edge.errors import ConfigError, ModelNotFound
from edge.router import Reason, decide
from edge.validation import ValidRequest

__all__ = ["Engine", "Result", "Timings"]

log = logging.getLogger("edge.engine")


@dataclass
class Timings:
    queue_wait_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_second: float = 0.0


@dataclass
class Result:
    request_id: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tier: int
    backend: str
    model: str
    timings: Timings
    trace: list[Reason] = field(default_factory=list)
    degraded: bool = False


def _build_backend(entry: ModelEntry, settings: Settings, models_dir: Path) -> ThreadedBackend:
    local = settings.local
    n_ctx = entry.n_ctx or local.n_ctx
    if entry.backend == "fake":
        return FakeBackend(entry.name, reply=entry.fake_reply, token_delay_s=entry.fake_token_delay_ms / 1000,
                           load_delay_s=entry.fake_load_delay_ms / 1000,
                           n_ctx=n_ctx, queue_size=local.queue_size)
    from edge.backends.llama import LlamaBackend

    sha256, size = entry.sha256, None
    if entry.path:
        path = Path(entry.path).expanduser()
    else:
        manifest = load_manifest()
        try:
            spec = manifest.get(entry.name)
        except ModelNotFound:
            raise ConfigError(f"local.models: model {entry.name!r} has no path and is not in the manifest") from None
        path, sha256, size = models_dir / spec.file, spec.sha256, spec.size
    if sha256:
        # Refuse a corrupt or truncated file here, with its name, rather than
        # letting llama.cpp meet it in native code.
        verify_file(path, sha256, name=entry.name, models_dir=models_dir if path.parent == models_dir else None,
                    expected_size=size)
    elif not path.is_file():
        raise ModelNotFound(f"model {entry.name!r}: file {path} does not exist")
    return LlamaBackend(entry.name, path, sha256=sha256, n_ctx=n_ctx, n_threads=local.n_threads,
                        n_gpu_layers=local.n_gpu_layers, chat_format=entry.chat_format, queue_size=local.queue_size)


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models_dir = default_models_dir(settings.local.models_dir)
        entries = list(settings.local.models)
        self.default_model = settings.local.default_model or (entries[0].name if entries else load_manifest().default)
        if not any(e.name == self.default_model for e in entries):
            entries.insert(0, ModelEntry(name=self.default_model))
        # Verifies every model file now: a bad file stops the daemon before it listens.
        self.backends: dict[str, ThreadedBackend] = {
            e.name: _build_backend(e, settings, self.models_dir) for e in entries}
        self.started_at = time.monotonic()

    async def start(self) -> None:
        """Load every model; the default first, since health waits on it."""
        for name in sorted(self.backends, key=lambda n: n != self.default_model):
            t0 = time.perf_counter()
            await self.backends[name].start()
            log.info("model loaded", extra={"model": name, "load_s": round(time.perf_counter() - t0, 3)})

    @property
    def ready(self) -> bool:
        return self.backends[self.default_model].state == "ready"

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends.values()))

    def describe(self) -> list[tuple[ModelDescription, str]]:
        return [(b.describe(), b.state) for b in self.backends.values()]

    async def generate(self, req: ValidRequest) -> AsyncIterator[str | Result]:
        """Yield text deltas as they come, then one Result."""
        started = time.monotonic()
        decision = decide(requested_model=req.model, preference=req.preference,
                          local_models=list(self.backends), default_model=self.default_model)
        backend = self.backends[decision.model]
        parts: list[str] = []
        first_at: float | None = None
        finish, prompt_tokens, completion_tokens, queue_wait_s = "", 0, 0, 0.0
        async for chunk in backend.generate(req.generation):
            if chunk.text:
                if first_at is None:
                    first_at = time.monotonic()
                parts.append(chunk.text)
                yield chunk.text
            if chunk.finish_reason:
                finish, queue_wait_s = chunk.finish_reason, chunk.queue_wait_s
                prompt_tokens, completion_tokens = chunk.prompt_tokens, chunk.completion_tokens
        ended = time.monotonic()
        first_at = first_at or ended
        decode_s = ended - first_at
        timings = Timings(
            queue_wait_ms=queue_wait_s * 1000,
            time_to_first_token_ms=(first_at - started) * 1000,
            total_ms=(ended - started) * 1000,
            tokens_per_second=(completion_tokens - 1) / decode_s if decode_s > 0 and completion_tokens > 1 else 0.0,
        )
        yield Result(request_id=req.generation.request_id, text="".join(parts), finish_reason=finish,
                     prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, tier=decision.tier,
                     backend="local", model=decision.model, timings=timings, trace=list(decision.reasons))
