"""The request path behind every front door: decide, generate, summarize.

validate (edge.validation) -> decide (edge.router) -> backend.generate -> Result.
The gRPC server (and later front doors) only translate to and from the wire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.backends.base import Backend, ModelDescription, Timeouts
from edge.backends.fake import FakeBackend
from edge.backends.threaded import ThreadedBackend
from edge.catalog import default_models_dir, load_manifest, verify_file
from edge.config import ModelEntry, RemoteEntry, Settings
from edge.errors import ConfigError, ModelNotFound
from edge.failover import Attempt, Candidate, Notice, RemoteState, Served, probe_loop, run_chain
from edge.resilience import BreakerState, CircuitBreaker
from edge.router import Reason, decide
from edge.router.policy import Decision
from edge.v1 import router_pb2 as pb
from edge.validation import ValidRequest

__all__ = ["Engine", "Result", "Timings", "TIERS"]

TIERS = {"local": pb.TIER_LOCAL, "onprem": pb.TIER_ONPREM, "cloud": pb.TIER_CLOUD}

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
    attempts: list[Attempt] = field(default_factory=list)


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


def _build_remote(entry: RemoteEntry, tier: int, settings: Settings) -> RemoteState:
    from edge.backends.anthropic import AnthropicBackend
    from edge.backends.gemini import GeminiBackend
    from edge.backends.openai import OpenAIBackend

    cls = {"openai": OpenAIBackend, "anthropic": AnthropicBackend, "gemini": GeminiBackend}[entry.kind]
    api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
    timeouts = Timeouts(connect_s=entry.connect_timeout_s, first_byte_s=entry.first_byte_timeout_s,
                        idle_s=entry.idle_timeout_s, total_s=entry.total_timeout_s)
    backend = cls(entry.name, base_url=entry.base_url or None, model=entry.model, api_key=api_key, timeouts=timeouts)
    state = RemoteState(backend, tier, CircuitBreaker(settings.resilience), stream_upstream=entry.stream_upstream)
    if entry.api_key_env and not api_key:
        # The daemon still serves (locally, or from other backends); status says why this one is idle.
        state.out_of_rotation = f"environment variable {entry.api_key_env} is not set"
        log.error("backend out of rotation", extra={"backend": entry.name, "error": state.out_of_rotation})
    return state


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
        # Remote backends, in configured order. In offline (air-gapped) mode none is
        # even built: nothing can contact them, not even a probe.
        self.remotes: dict[str, RemoteState] = {}
        if not settings.routing.offline:
            for entry in settings.onprem:
                self.remotes[entry.name] = _build_remote(entry, pb.TIER_ONPREM, settings)
            for entry in settings.cloud:
                self.remotes[entry.name] = _build_remote(entry, pb.TIER_CLOUD, settings)
        configured = {"onprem": bool(settings.onprem), "cloud": bool(settings.cloud)}
        self.remote_tiers = tuple(t for t in ("onprem", "cloud") if configured[t])
        self._probe_task: asyncio.Task[None] | None = None
        self.started_at = time.monotonic()

    async def start(self) -> None:
        """Load every model; the default first, since health waits on it."""
        for name in sorted(self.backends, key=lambda n: n != self.default_model):
            t0 = time.perf_counter()
            await self.backends[name].start()
            log.info("model loaded", extra={"model": name, "load_s": round(time.perf_counter() - t0, 3)})
        if self.remotes:
            self._probe_task = asyncio.create_task(
                probe_loop(list(self.remotes.values()), self.settings.resilience.probe_interval_s))

    @property
    def ready(self) -> bool:
        return self.backends[self.default_model].state == "ready"

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
        await asyncio.gather(*(b.close() for b in self.backends.values()),
                             *(st.backend.close() for st in self.remotes.values()))

    def network(self) -> str:
        """'local-only', 'offline', 'up' (a remote backend is usable) or 'down'."""
        if self.settings.routing.offline and (self.settings.onprem or self.settings.cloud):
            return "offline"
        if not self.remotes:
            return "local-only"
        usable = any(not st.out_of_rotation and st.breaker.state != BreakerState.OPEN for st in self.remotes.values())
        return "up" if usable else "down"

    def _chain(self, decision: Decision) -> list[Candidate]:
        chain: list[Candidate] = []
        for tier in decision.tiers:
            if tier == "local":
                backend: Backend = self.backends[decision.model]
                chain.append(Candidate("local", pb.TIER_LOCAL, backend, decision.model))
                continue
            states = [st for st in self.remotes.values() if st.tier == TIERS[tier]]
            if tier == "onprem":
                # The pool: least outstanding requests first (stable for ties, so config order breaks them).
                states.sort(key=lambda st: st.outstanding)
            chain.extend(Candidate(st.backend.name, st.tier, st.backend, st.backend.model, st)  # type: ignore[attr-defined]
                         for st in states)
        return chain

    def describe(self) -> list[tuple[ModelDescription, str]]:
        return [(b.describe(), b.state) for b in self.backends.values()]

    async def generate(self, req: ValidRequest) -> AsyncIterator[str | Notice | Result]:
        """Yield text deltas (and mid-stream notices) as they come, then one Result."""
        started = time.monotonic()
        routing = self.settings.routing
        decision = decide(requested_model=req.model, preference=req.preference, local_models=list(self.backends),
                          default_model=self.default_model, remote_tiers=self.remote_tiers,
                          chain=tuple(routing.chain), offline=routing.offline, local_only=routing.local_only)
        parts: list[str] = []
        notices: list[Reason] = []
        first_at: float | None = None
        served: Served | None = None
        async for event in run_chain(req.generation, self._chain(decision), self.settings.resilience):
            if isinstance(event, str):
                if first_at is None:
                    first_at = time.monotonic()
                parts.append(event)
                yield event
            elif isinstance(event, Notice):
                notices.append(event.reason)
                yield event
            else:
                served = event
        assert served is not None  # run_chain ends with Served or raises
        ended = time.monotonic()
        first_at = first_at or ended
        decode_s = ended - first_at
        final, cand = served.final, served.candidate
        timings = Timings(
            queue_wait_ms=final.queue_wait_s * 1000,
            time_to_first_token_ms=(first_at - started) * 1000,
            total_ms=(ended - started) * 1000,
            tokens_per_second=(final.completion_tokens - 1) / decode_s
            if decode_s > 0 and final.completion_tokens > 1 else 0.0,
        )
        trace = list(decision.reasons)
        degraded = decision.wants_remote and cand.tier == pb.TIER_LOCAL
        if degraded:
            tried = "; ".join(f"{a.backend}: {a.outcome}" for a in served.attempts if a.tier != pb.TIER_LOCAL)
            trace.append(Reason("DEGRADED_LOCAL", f"no remote tier could answer ({tried}); served by the local model"))
        elif len(served.attempts) > 1:
            trace.append(Reason("FAILOVER", f"served by {cand.name} after {len(served.attempts) - 1} failed or skipped attempt(s)"))
        trace.extend(notices)
        if served.usage_estimated:
            trace.append(Reason("USAGE_ESTIMATED", f"{cand.name} reported no token usage; counts are estimates"))
        yield Result(request_id=req.generation.request_id, text="".join(parts), finish_reason=final.finish_reason or "",
                     prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens, tier=cand.tier,
                     backend=cand.name, model=cand.model, timings=timings, trace=trace, degraded=degraded,
                     attempts=list(served.attempts))
