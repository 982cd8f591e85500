"""Backends from configuration: the local models (verified before anything listens) and
the remote tiers with their breakers."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edge.backends.base import Timeouts
from edge.backends.fake import FakeBackend
from edge.backends.threaded import ThreadedBackend
from edge.catalog import load_manifest, verify_file
from edge.config import ModelEntry, RemoteEntry, Settings
from edge.errors import ConfigError, ModelNotFound
from edge.pipeline.candidates import RemoteState
from edge.resilience import CircuitBreaker, Clock
from edge.types import Tier

if TYPE_CHECKING:
    import httpx

__all__ = ["build_local", "build_remote"]

log = logging.getLogger("edge.engine")


def build_local(entry: ModelEntry, settings: Settings, models_dir: Path) -> ThreadedBackend:
    local = settings.local
    n_ctx = entry.n_ctx or local.n_ctx
    if entry.backend == "fake":
        return FakeBackend(entry.name, reply=entry.fake_reply, token_delay_s=entry.fake_token_delay_ms / 1000,
                           load_delay_s=entry.fake_load_delay_ms / 1000,
                           n_ctx=n_ctx, queue_size=local.queue_size, queue_per_client=local.queue_per_client,
                           logprob=entry.fake_logprob)
    from edge.backends.base import Message
    from edge.backends.llama import DEFAULT_TEMPERATURE, LlamaBackend

    sha256, size, spec = entry.sha256, None, None
    if entry.path:
        path = Path(entry.path).expanduser()
    else:
        manifest = load_manifest()
        try:
            spec = manifest.get(entry.name)
        except ModelNotFound:
            raise ConfigError(f"local.models: model {entry.name!r} has no path and is not in the manifest") from None
        path, sha256, size = models_dir / spec.file, spec.sha256, spec.size
    # Refuse a missing, truncated or corrupt file here, with its name and the fix, rather
    # than letting llama.cpp meet it in native code (the GGUF structure is checked with or
    # without a sha256).
    verify_file(path, sha256, name=entry.name, models_dir=models_dir if path.parent == models_dir else None,
                expected_size=size, origin="path" if entry.path else "manifest")
    primer = tuple(Message(role, text) for role, text in spec.primer) if spec is not None and entry.primer else ()
    temperature = entry.temperature if entry.temperature is not None else (
        spec.temperature if spec is not None and spec.temperature is not None else DEFAULT_TEMPERATURE)
    return LlamaBackend(entry.name, path, sha256=sha256, n_ctx=n_ctx, n_threads=local.n_threads,
                        n_gpu_layers=local.n_gpu_layers, chat_format=entry.chat_format, queue_size=local.queue_size,
                        queue_per_client=local.queue_per_client, primer=primer, temperature=temperature)


def build_remote(entry: RemoteEntry, tier: Tier, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None) -> RemoteState:
    """The backend for one [[onprem]] or [[cloud]] entry with its breaker. `transport`
    and `clock` replace the network and the breaker's clock (tests, benchmarks)."""
    from edge.backends.anthropic import AnthropicBackend
    from edge.backends.gemini import GeminiBackend
    from edge.backends.openai import OpenAIBackend

    cls = {"openai": OpenAIBackend, "anthropic": AnthropicBackend, "gemini": GeminiBackend}[entry.kind]
    api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
    timeouts = Timeouts(connect_s=entry.connect_timeout_s, first_byte_s=entry.first_byte_timeout_s,
                        idle_s=entry.idle_timeout_s, total_s=entry.total_timeout_s)
    backend = cls(entry.name, base_url=entry.base_url or None, model=entry.model, api_key=api_key, timeouts=timeouts,
                  transport=transport, continuation=entry.continuation, api_version=entry.api_version,
                  thinking_budget=entry.thinking_budget, official={"auto": None, "official": True,
                                                                   "compatible": False}[entry.api])
    breaker = CircuitBreaker(settings.resilience, clock) if clock is not None else CircuitBreaker(settings.resilience)
    state = RemoteState(backend, tier, breaker, stream_upstream=entry.stream_upstream)
    if entry.api_key_env and not api_key:
        # The daemon still serves (locally, or from other backends); status says why this one is idle.
        state.out_of_rotation = f"environment variable {entry.api_key_env} is not set"
        log.error("backend out of rotation", extra={"backend": entry.name, "error": state.out_of_rotation})
    return state
