"""The request path behind every front door: decide, generate, summarize.

validate (edge.validation) -> cache (edge.caching) -> decide (edge.router) -> cost gate
(edge.costing) -> run_chain (edge.failover) -> Result. The gRPC server and the HTTP
front door only translate to and from the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backends.base import Backend, Chunk, GenerationRequest, Message, ModelDescription
from edge.backends.threaded import ThreadedBackend
from edge.builders import build_local, build_remote
from edge.cache import CachedAnswer
from edge.caching import CachedBackend, Caching, Lookup, pieces
from edge.catalog import default_models_dir, load_manifest
from edge.confidence import Confidence, GatePoint, is_confident
from edge.config import ModelEntry, Settings
from edge.costing import Costs
from edge.errors import ModelNotFound
from edge.failover import Attempt, Candidate, Notice, RemoteState, Served, probe_loop, run_chain
from edge.ledger import Ledger, LedgerEntry, default_ledger_path
from edge.metrics import Metrics
from edge.pricing import PriceTable
from edge.privacy import describe_kinds
from edge.resilience import BreakerState
from edge.router import Reason, Signals, Thresholds, decide, weigh
from edge.router.estimates import LocalEstimate
from edge.router.load import LoadMonitor, LoadSample
from edge.router.classifier import last_user_message
from edge.router.policy import TIER_NAMES, TIERS, Decision
from edge.tracing import NOOP, Span, build_tracer
from edge.v1 import router_pb2 as pb
from edge.validation import ValidRequest

__all__ = ["Engine", "Result", "Timings", "TIERS"]


log = logging.getLogger("edge.engine")

# What the policy sees with routing.device_load off: no load signal at all.
CALM = LoadSample(cpu_percent=None, memory_percent=None, battery_percent=None, on_battery=False,
                  thermal_throttled=False)


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
    cost_usd: float = 0.0
    cache: pb.CacheHit | None = None  # set when the answer came from the answer cache


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
            e.name: build_local(e, settings, self.models_dir) for e in entries}
        # Remote backends, in configured order. In offline (air-gapped) mode none is
        # even built: nothing can contact them, not even a probe.
        self.remotes: dict[str, RemoteState] = {}
        if not settings.routing.offline:
            for entry in settings.onprem:
                self.remotes[entry.name] = build_remote(entry, pb.TIER_ONPREM, settings)
            for entry in settings.cloud:
                self.remotes[entry.name] = build_remote(entry, pb.TIER_CLOUD, settings)
        configured = {"onprem": bool(settings.onprem), "cloud": bool(settings.cloud)}
        self.remote_tiers = tuple(t for t in ("onprem", "cloud") if configured[t])
        self._probe_task: asyncio.Task[None] | None = None
        self._profile_task: asyncio.Task[None] | None = None
        self.prices = PriceTable.load(settings.cost.prices)
        r = settings.routing
        self.thresholds = Thresholds(difficulty=r.difficulty_threshold, cascade_band=r.cascade_band,
                                     max_queue_depth=r.max_queue_depth, cpu_percent=r.cpu_high_percent,
                                     memory_percent=r.memory_high_percent, battery_percent=r.battery_low_percent,
                                     cascade=r.cascade)
        self.estimates = {name: LocalEstimate() for name in self.backends}
        self.load = LoadMonitor()
        self.classifier: Any = None  # set by start() when the router models are installed
        self.ledger = Ledger(Path(settings.ledger_path).expanduser() if settings.ledger_path else default_ledger_path())
        # One writer thread: ledger writes stay off the event loop, in order, and
        # close() waits for the last of them.
        self._ledger_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self.started_at = time.monotonic()
        self.costs = Costs(settings.cost, self.prices, self.ledger)
        self.metrics = Metrics()
        self.caching: Caching | None = None  # set by start() when [cache] is enabled
        self.hardware: Any = None  # edge.profiler.HardwareProfile once start() has probed it
        self.profiles: dict[str, Any] = {}  # model name -> the edge.profiler.ModelProfile applied
        self.tracer = build_tracer(settings.tracing)

    async def start(self) -> None:
        """Load every model; the default first, since health waits on it."""
        for name in sorted(self.backends, key=lambda n: n != self.default_model):
            t0 = time.perf_counter()
            await self.backends[name].start()
            log.info("model loaded", extra={"model": name, "load_s": round(time.perf_counter() - t0, 3)})
        if self.remotes:
            self._probe_task = asyncio.create_task(
                probe_loop(list(self.remotes.values()), self.settings.resilience.probe_interval_s))
        self._profile_task = asyncio.create_task(self._seed_from_profiles())
        routing = self.settings.routing
        if routing.classifier and routing.strategy == "smart" and self.remotes:
            await self._load_classifier()
        if self.settings.cache.enabled:
            await self._open_cache()

    async def _open_cache(self) -> None:
        c = self.settings.cache
        encoder = None
        if c.semantic:
            if self.classifier is not None:
                encoder = self.classifier.encoder  # one encoder in memory for both
            else:
                from edge.errors import ModelError
                from edge.router.classifier import SentenceEncoder

                try:
                    encoder = await asyncio.to_thread(SentenceEncoder.from_models_dir, self.models_dir)
                except ModelError as exc:
                    log.warning("semantic cache off: the encoder is not usable; exact matches only",
                                extra={"error": str(exc)})
        path = Path(c.path).expanduser() if c.path else self.ledger.path.with_suffix(".answers.sqlite3")
        self.caching = await asyncio.to_thread(Caching, self.settings, path, encoder)
        log.info("answer cache open", extra={"path": str(path), "semantic": encoder is not None})

    async def _load_classifier(self) -> None:
        from edge.errors import ModelError
        from edge.router.classifier import DifficultyClassifier

        try:
            self.classifier = await asyncio.to_thread(DifficultyClassifier.from_models_dir, self.models_dir)
        except ModelNotFound as exc:
            log.info("difficulty classifier not installed; the difficulty step is skipped", extra={"why": str(exc)})
        except ModelError as exc:
            log.warning("difficulty classifier unusable; the difficulty step is skipped", extra={"error": str(exc)})

    async def _seed_from_profiles(self) -> None:
        """Seed each GGUF model's rate estimates from its stored profile, measuring one
        (bounded, off the loop) when none is stored and profile_on_start is set; with
        n_threads = 0 (auto), switch the model to the profile's fastest thread count."""
        from edge.backends.llama import LlamaBackend
        from edge.profiler import collect_hardware, ensure_profile, load_profile

        routing = self.settings.routing
        try:
            self.hardware = await asyncio.to_thread(collect_hardware, bandwidth=False)
        except Exception as exc:  # noqa: BLE001 - collect_hardware never raises by contract; belt and braces
            log.warning("hardware probe failed", extra={"error": str(exc)})
        for name, backend in self.backends.items():
            if not isinstance(backend, LlamaBackend) or not backend.sha256:
                continue
            try:
                if routing.profile_on_start:
                    profile = await asyncio.to_thread(ensure_profile, backend.path, backend.sha256,
                                                      budget_s=routing.profile_budget_s, name=name)
                elif self.hardware is not None:
                    import llama_cpp

                    profile = load_profile(self.hardware.fingerprint, backend.sha256, llama_cpp.__version__)
                else:
                    profile = None
            except Exception as exc:  # noqa: BLE001 - profiling must never take the daemon down
                log.warning("profile unavailable", extra={"model": name, "error": str(exc)})
                continue
            if profile is None:
                continue
            self.profiles[name] = profile
            est = self.estimates[name]
            if est.prompt_tps.value is None:
                est.seed(profile.prompt_tps, profile.gen_tps)
            if self.settings.local.n_threads == 0 and profile.best_threads != backend.n_threads:
                await asyncio.to_thread(backend.set_threads, profile.best_threads)
            log.info("profile applied", extra={"model": name, "prompt_tps": round(profile.prompt_tps, 1),
                                               "gen_tps": round(profile.gen_tps, 1), "threads": backend.n_threads})

    @property
    def ready(self) -> bool:
        return self.backends[self.default_model].state == "ready"

    async def close(self) -> None:
        for task in (self._probe_task, self._profile_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(b.close() for b in self.backends.values()),
                             *(st.backend.close() for st in self.remotes.values()))
        await asyncio.to_thread(self._ledger_writer.shutdown, wait=True)
        self.ledger.close()
        if self.caching is not None:
            await asyncio.to_thread(self.caching.close)
        await asyncio.to_thread(self.tracer.shutdown)

    def _confidence_gate(self, chain: list[Candidate], *, cached_fallback: bool, kept: list[str],
                         confident: list[str]):  # type: ignore[no-untyped-def]
        """The cascade's check: at the end of the answer's first sentence, after
        `cascade_holdback_tokens` tokens, or at the end of the answer, whichever comes
        first (edge.confidence.GatePoint), is the local model confident enough to keep
        its answer?

        Escalating needs somewhere to go: when no remote candidate in `chain` can be
        reached (breakers open, out of rotation) and no close cached answer waits at the
        end of it, an unconfident local answer stands (its reason is put in `kept`). A
        confident verdict's figures go in `confident`, for the answer's trace."""
        r = self.settings.routing

        def reachable() -> bool:
            return any(c.remote is not None and not c.remote.out_of_rotation
                       and c.remote.breaker.state != BreakerState.OPEN for c in chain)

        point = GatePoint(r.cascade_holdback_tokens, first_sentence=r.cascade_first_sentence)

        def gate(chunk: Chunk) -> tuple[bool, str] | None:
            if not point.reached(chunk.text, chunk.completion_tokens, finished=chunk.finish_reason is not None):
                return None
            if chunk.logprob_mean is None or chunk.logprob_min is None:
                return True, ""  # nothing to judge (an empty answer): keep it
            conf = Confidence(chunk.logprob_mean, chunk.logprob_min, chunk.completion_tokens)
            judged = point.judged if point.judged.endswith(" tokens") else f"{point.judged} ({conf.tokens} tokens)"
            figures = (f"mean log-prob {conf.mean:.2f} (min {r.cascade_min_mean_logprob}), lowest token "
                       f"{conf.minimum:.2f} (min {r.cascade_min_token_logprob}) over {judged}")
            if is_confident(conf, min_mean=r.cascade_min_mean_logprob, min_token=r.cascade_min_token_logprob):
                confident.append(f"the local model was confident: {figures}")
                return True, ""
            why = f"not confident: {figures}"
            if reachable() or cached_fallback:
                return False, why
            kept.append(why)
            return True, ""

        return gate

    async def _signals(self, req: ValidRequest, decision: Decision, *, remote_affordable: bool,
                       found: Lookup) -> Signals:
        """Measure what the policy weighs: predicted latencies, load, difficulty. The
        difficulty reuses the cache lookup's embedding of the prompt when there is one."""
        gen = req.generation
        backend = self.backends[decision.model]
        prompt_est = gen.approx_prompt_tokens()
        first_remote = next((st for st in self.remotes.values() if st.tier == TIERS[decision.tiers[0]]), None)
        load = self.load.sample() if self.settings.routing.device_load else CALM
        difficulty = None
        if self.classifier is not None:
            messages = [(m.role, m.content) for m in gen.messages]
            if found.vector is not None and self.caching is not None and self.caching.encoder is self.classifier.encoder:
                difficulty = self.classifier.score_embedding(last_user_message(messages), found.vector, found.tokens)
            else:
                difficulty = await asyncio.to_thread(self.classifier.score, messages)
        return Signals(
            max_latency_ms=req.max_latency_ms,
            local_predicted_s=self.estimates[decision.model].predict_s(
                prompt_tokens=prompt_est, max_tokens=gen.params.max_tokens, waiting=backend.queue.waiting),
            remote_predicted_s=first_remote.latency_s.value if first_remote is not None else None,
            remote_affordable=remote_affordable, queue_depth=backend.queue.waiting,
            cpu_percent=load.cpu_percent, memory_percent=load.memory_percent, battery_percent=load.battery_percent,
            on_battery=load.on_battery, thermal_throttled=load.thermal_throttled, difficulty=difficulty)

    def record(self, entry: LedgerEntry) -> Future[None]:
        """Queue a ledger write on the writer thread; never blocks the loop, never fails the
        request (a failed write is logged). The future says when the row is committed."""
        future = self._ledger_writer.submit(self.ledger.record, entry)
        future.add_done_callback(lambda f: f.exception() and log.error(
            "ledger write failed", extra={"request_id": entry.request_id, "error": str(f.exception())}))
        return future

    def record_failure(self, request_id: str, status: str, latency_ms: float) -> None:
        self.metrics.observe_failure(status)
        self.record(LedgerEntry(request_id=request_id, ts=time.time(), tier="", backend="", model="",
                                prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=latency_ms,
                                outcome=status))

    # -- privacy ------------------------------------------------------------------------

    async def _pii(self, req: ValidRequest) -> list[str]:
        """Kinds of personal data or secrets in the request, when some could leave the device."""
        if self.settings.privacy.pii == "off" or not self.remotes:
            return []
        from edge.privacy import find_pii

        kinds = self.settings.privacy.pii_kinds

        def scan() -> list[str]:
            return sorted({f.kind for m in req.generation.messages for f in find_pii(m.content, kinds)})

        # ~60 us for a chat prompt, but up to ~150 ms for 64 KB of digits: big requests
        # are scanned off the event loop so they cannot stall other clients' streams.
        if sum(len(m.content) for m in req.generation.messages) > 4096:
            return await asyncio.to_thread(scan)
        return scan()

    def _redactor(self):  # type: ignore[no-untyped-def]
        """Under privacy.pii = 'redact': (outbound, restorer). `outbound` is what remote tiers
        receive: every message (and any continuation text) with the values replaced by
        placeholders, numbered per request; `restorer` puts the values back into the answer
        as it streams to the client, so "[EMAIL_1]" in a remote answer reads as the address."""
        from edge.privacy import Redactor, StreamRestorer

        redactor = Redactor(self.settings.privacy.pii_kinds)

        def outbound(r: GenerationRequest) -> GenerationRequest:
            from dataclasses import replace

            return replace(r, messages=tuple(Message(m.role, redactor.redact(m.content)) for m in r.messages),
                           assistant_prefix=redactor.redact(r.assistant_prefix))

        return outbound, StreamRestorer(redactor)

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
        span = self.tracer.start("edge.request", request_id=req.generation.request_id, stream=req.generation.stream)
        error: BaseException | None = None
        try:
            async for event in self._generate(req, span):
                if isinstance(event, Result):
                    span.set(tier=TIER_NAMES[event.tier], backend=event.backend, degraded=event.degraded,
                             prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens,
                             reasons=[r.code for r in event.trace])
                yield event
        except BaseException as exc:
            error = exc
            raise
        finally:
            span.end(error)

    async def _from_cache(self, req: ValidRequest, hit: CachedAnswer, started: float) -> AsyncIterator[str | Result]:
        """Play a cache hit back (word by word to a stream), recorded like any answer."""
        first_at = None
        for piece in pieces(hit.text) if req.generation.stream else [hit.text]:
            first_at = first_at or time.monotonic()
            yield piece
        ended = time.monotonic()
        info = Caching.hit_info(hit)
        how = "exact match" if hit.kind == "exact" else \
            f"semantic match (cosine {hit.similarity:.3f} >= {self.settings.cache.threshold})"
        trace = [Reason("CACHE_HIT", f"{how} of an answer by {hit.tier}/{hit.backend} ({hit.model}) "
                                     f"{info.age_s:.0f}s ago")]
        total_ms = (ended - started) * 1000
        result = Result(request_id=req.generation.request_id, text=hit.text, finish_reason=hit.finish_reason,
                        prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, tier=pb.TIER_LOCAL,
                        backend="cache", model=hit.model,
                        timings=Timings(time_to_first_token_ms=((first_at or ended) - started) * 1000,
                                        total_ms=total_ms),
                        trace=trace, attempts=[Attempt("cache", pb.TIER_LOCAL, "ok", total_ms)], cost_usd=0.0,
                        cache=info)
        await self._commit(result)
        self.metrics.cache.labels(hit.kind).inc()
        yield result

    async def _commit(self, result: Result) -> None:
        """Record an answer in the ledger and the metrics. Committed before the client hears
        the answer is final: a kill -9 can then lose an answer nobody received, but never
        spending somebody was served."""
        committed = self.record(LedgerEntry(
            request_id=result.request_id, ts=time.time(), tier=TIER_NAMES[result.tier], backend=result.backend,
            model=result.model, prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            cost_usd=result.cost_usd, latency_ms=result.timings.total_ms, outcome="ok",
            reasons=[r.code for r in result.trace], degraded=result.degraded))
        with contextlib.suppress(Exception):  # a failed write is logged by record(); the answer stands
            await asyncio.wrap_future(committed)
        self.metrics.observe_result(result, TIER_NAMES[result.tier])

    async def _plan(self, req: ValidRequest, span: Span, pii: list[str], keep_local: bool,
                    found: Lookup) -> tuple[Decision, list[Candidate], list[Attempt]]:
        """decide -> cost gate -> weigh: the plan, the chain in order, the candidates ruled out."""
        dspan = span.child("edge.decide")
        try:
            routing = self.settings.routing
            decision = decide(requested_model=req.model, preference=req.preference, local_models=list(self.backends),
                              default_model=self.default_model, remote_tiers=self.remote_tiers,
                              chain=tuple(routing.chain), offline=routing.offline, local_only=routing.local_only,
                              sensitive=describe_kinds(pii) if keep_local else "")
            chain, skipped = self.costs.gate(req, self._chain(decision))
            if routing.strategy == "smart" and decision.open_choice:
                signals = await self._signals(req, decision, remote_affordable=any(c.remote for c in chain),
                                              found=found)
                decision = weigh(decision, signals, self.thresholds)
                order = {t: i for i, t in enumerate(decision.tiers)}
                chain.sort(key=lambda c: order[TIER_NAMES[c.tier]])  # stable within a tier
        except BaseException as exc:
            dspan.end(exc)
            raise
        dspan.set(tiers=list(decision.tiers), reasons=[r.code for r in decision.reasons], cascade=decision.cascade,
                  pii=pii)
        dspan.end()
        return decision, chain, skipped

    async def _generate(self, req: ValidRequest, span: Span = NOOP) -> AsyncIterator[str | Notice | Result]:
        started = time.monotonic()
        pii = await self._pii(req)
        keep_local = bool(pii) and self.settings.privacy.pii == "keep_local"
        found = await self.caching.lookup(req, keep_local) if self.caching is not None else Lookup(None)
        if found.hit is not None:
            async for event in self._from_cache(req, found.hit, started):
                yield event
            return
        decision, chain, skipped = await self._plan(req, span, pii, keep_local, found)
        redact = bool(pii) and self.settings.privacy.pii == "redact"
        outbound, restorer = self._redactor() if redact else (None, None)
        parts: list[str] = []
        notices: list[Reason] = []
        first_at: float | None = None
        served: Served | None = None
        gate, kept, confident = None, [], []
        if decision.cascade:
            if found.fallback is not None:  # after every remote tier: used only when none answers
                chain.append(Candidate("cache", pb.TIER_LOCAL, CachedBackend(found.fallback), found.fallback.model))
            gate = self._confidence_gate(chain, cached_fallback=found.fallback is not None, kept=kept,
                                         confident=confident)
            # The local model is the last resort, never switched off: if the escalation
            # fails too, it answers after all (ungated: only the first candidate is judged).
            assert chain[0].remote is None  # a cascade answers locally first
            chain.append(chain[0])
        async for event in run_chain(req.generation, chain, self.settings.resilience, skipped, gate,
                                     outbound=outbound, span=span):
            if isinstance(event, str):
                if restorer is not None:
                    event = restorer.feed(event)
                    if not event:
                        continue  # maybe half a placeholder: held until it is whole
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
        if restorer is not None and (tail := restorer.flush()):
            first_at = first_at or time.monotonic()
            parts.append(tail)
            yield tail
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
        degraded = decision.tiers[0] != "local" and cand.tier == pb.TIER_LOCAL
        unconfident = [a for a in served.attempts if a.outcome == "low_confidence"]
        if unconfident and cand.name == "local":
            degraded = True
            tried = "; ".join(f"{a.backend}: {a.outcome}" for a in served.attempts if a.tier != pb.TIER_LOCAL)
            trace.append(Reason("DEGRADED_LOCAL", f"the local answer was not confident, but no escalation "
                                                  f"answered ({tried}); served by the local model after all"))
        elif degraded:
            tried = "; ".join(f"{a.backend}: {a.outcome}" for a in served.attempts if a.tier != pb.TIER_LOCAL)
            trace.append(Reason("DEGRADED_LOCAL", f"no remote tier could answer ({tried}); served by the local model"))
        elif len(served.attempts) > 1:
            trace.append(Reason("FAILOVER", f"served by {cand.name} after {len(served.attempts) - 1} failed or skipped attempt(s)"))
        trace.extend(notices)
        if confident and cand.name == "local":
            trace.append(Reason("CASCADE_CONFIDENT", confident[0]))
        if kept:
            degraded = True  # an answer the cascade would have escalated, kept for want of anywhere to go
            trace.append(Reason("CASCADE_KEPT_LOCAL", f"{kept[0]}; but no remote tier is reachable and no cached "
                                                      "answer is close, so the local answer stands"))
        cache_info = None
        if cand.name == "cache" and found.fallback is not None:
            fb = found.fallback
            local_outcome = next((a.outcome for a in served.attempts if a.backend == "local"), "")
            trace.append(Reason("CACHE_FALLBACK", f"local model: {local_outcome or 'no answer'}, no remote tier "
                                f"reachable: served a cached answer by {fb.tier}/{fb.backend} ({fb.kind} match, cosine "
                                f"{fb.similarity:.3f} >= {self.settings.cache.fallback_threshold})"))
            cache_info = Caching.hit_info(fb)
            self.metrics.cache.labels("fallback").inc()
        if served.usage_estimated:
            trace.append(Reason("USAGE_ESTIMATED", f"{cand.name} reported no token usage; counts are estimates"))
        for a in served.attempts:
            if a.outcome in ("over_budget", "over_cost_ceiling"):
                trace.append(Reason("COST_" + a.outcome.upper(), f"{a.backend}: {a.detail}"))
        if redact:
            trace.append(Reason("PII_REDACTED", f"{describe_kinds(pii)} replaced by placeholders in everything sent "
                                                "to remote tiers (and put back in the answer)"))
        if cand.remote is None and cand.model in self.estimates and cache_info is None:
            self.estimates[cand.model].observe(
                prompt_tokens=final.prompt_tokens, prompt_s=max(0.0, first_at - started - final.queue_wait_s),
                completion_tokens=final.completion_tokens, decode_s=decode_s, service_s=ended - started - final.queue_wait_s)
        cost = 0.0 if cache_info is not None else self.costs.of(cand, final.prompt_tokens, final.completion_tokens,
                                                                 ended - started)
        result = Result(request_id=req.generation.request_id, text="".join(parts),
                        finish_reason=final.finish_reason or "", prompt_tokens=final.prompt_tokens,
                        completion_tokens=final.completion_tokens, tier=cand.tier, backend=cand.name,
                        model=cand.model, timings=timings, trace=trace, degraded=degraded,
                        attempts=list(served.attempts), cost_usd=cost, cache=cache_info)
        if (self.caching is not None and cache_info is None and not degraded and result.text
                and result.finish_reason in ("stop", "length")):
            self.caching.store(found, CachedAnswer(
                text=result.text, finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens, tier=TIER_NAMES[cand.tier], backend=cand.name,
                model=cand.model, created=time.time()))
        await self._commit(result)
        if pii:
            self.metrics.pii.labels(self.settings.privacy.pii).inc()
        yield result

