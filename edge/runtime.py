"""What the request path stands on, built once: the local models, the remote backends
with their breakers, the ledger, prices, metrics and tracer; and, loaded at start,
the classifier, the answer cache and the hardware profiles.

Construction verifies every model file (a bad file stops the daemon before it
listens) and opens nothing on the network. `start()` loads; `close()` releases;
`snapshot()` is the one read of live state that status and metrics use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.backends.base import LocalModel
from edge.builders import build_local, build_remote
from edge.cache_policy import CachePolicy
from edge.calibration.store import CalibrationStore
from edge.calibration.teacher import Teacher
from edge.catalog import default_models_dir, load_manifest
from edge.config import ModelEntry, Settings
from edge.cost_gate import CostGate
from edge.errors import ModelError, ModelNotFound
from edge.ledger import Ledger, default_ledger_path
from edge.metrics import Metrics
from edge.fleet import FleetMember
from edge.pipeline.candidates import RemoteState, probe_loop
from edge.pricing import PriceTable
from edge.resilience import BreakerState, Clock
from edge.router.estimates import LocalEstimate
from edge.router.load import LoadMonitor, LoadSource
from edge.snapshot import BackendSnapshot, BudgetSnapshot, ModelSnapshot, RouterFitSnapshot, Snapshot
from edge.tracing import build_tracer
from edge.types import Tier

if TYPE_CHECKING:
    import httpx

    from edge.router.classifier import DifficultyClassifier

__all__ = ["Runtime", "Injected"]

log = logging.getLogger("edge.engine")

LEDGER_REFRESH_S = 5.0  # how stale another process's spending may look to the budget check


@dataclass(frozen=True)
class Injected:
    """What a test or a benchmark may put in place of the real thing (None = build it)."""

    local: dict[str, LocalModel] | None = None        # local models by name, instead of [local] models
    transport: httpx.AsyncBaseTransport | None = None  # every remote backend's HTTP transport
    clock: Clock | None = None                         # the breakers' clock (then no background probe
                                                       # runs: a test drives probe_once in its own time)
    load: LoadSource | None = None                    # device load (None with routing.device_load off)
    classifier: DifficultyClassifier | None = None     # the difficulty classifier, instead of loading one
    ledger: Ledger | None = None
    rng: Callable[[], float] | None = None             # shadow sampling's coin (random.random)


class Runtime:
    def __init__(self, settings: Settings, injected: Injected = Injected()) -> None:
        self.settings = settings
        self._fake_clock = injected.clock is not None
        self._stop_profiles = threading.Event()
        self.models_dir = default_models_dir(settings.local.models_dir)
        self.local, self.default_model = self._local_models(settings, injected)
        # Remote backends, in configured order. In offline (air-gapped) mode none is
        # even built: nothing can contact them, not even a probe.
        self.remotes: dict[str, RemoteState] = {}
        if not settings.routing.offline:
            for tier, entries in ((Tier.ONPREM, settings.onprem), (Tier.CLOUD, settings.cloud)):
                for entry in entries:
                    self.remotes[entry.name] = build_remote(entry, tier, settings, transport=injected.transport,
                                                            clock=injected.clock)
        self.prices = PriceTable.load(settings.cost.prices)
        self.ledger = injected.ledger or Ledger(
            Path(settings.ledger_path).expanduser() if settings.ledger_path else default_ledger_path())
        self.cost_gate = CostGate(settings.cost, self.prices, self.ledger)
        self.estimates = {name: LocalEstimate() for name in self.local}
        self.load = injected.load if injected.load is not None else (
            LoadMonitor() if settings.routing.device_load else None)
        self.classifier: DifficultyClassifier | None = injected.classifier
        self.cache: CachePolicy | None = None   # set by start() when [cache] is enabled
        self.teacher: Teacher | None = None      # set by start() with remote tiers and [calibration] on
        self.fleet: FleetMember | None = None    # set by start() with [fleet] servers
        self.shadow_samples: Callable[[], int] | None = None  # set by the engine: shadow calls started
        self.hardware: Any = None                # edge.profiler.HardwareProfile once start() has probed it
        self.profiles: dict[str, Any] = {}       # model name -> the edge.profiler.ModelProfile applied
        self.metrics = Metrics()
        self.tracer = build_tracer(settings.tracing)
        self.started_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def _local_models(settings: Settings, injected: Injected) -> tuple[dict[str, LocalModel], str]:
        if injected.local is not None:
            names = list(injected.local)
            return dict(injected.local), settings.local.default_model or names[0]
        entries = list(settings.local.models)
        default = settings.local.default_model or (entries[0].name if entries else load_manifest().default)
        if not any(e.name == default for e in entries):
            entries.insert(0, ModelEntry(name=default))
        models_dir = default_models_dir(settings.local.models_dir)
        # Verifies every model file now: a bad file stops the daemon before it listens.
        return {e.name: build_local(e, settings, models_dir) for e in entries}, default

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        """Load every model (the default first, since health waits on it), then the
        router's parts; profiles and sensors are read in the background."""
        for name in sorted(self.local, key=lambda n: n != self.default_model):
            t0 = time.perf_counter()
            await self.local[name].start()
            log.info("model loaded", extra={"model": name, "load_s": round(time.perf_counter() - t0, 3)})
        if self.settings.fleet.servers:  # the link connects on its own task: start never waits for it
            self.fleet = FleetMember(self.settings.fleet, describe=self._heartbeat)
            self.fleet.start(self.cost_gate)
        if self.remotes and not self._fake_clock:
            self._spawn(probe_loop(list(self.remotes.values()), self.settings.resilience.probe_interval_s))
        self._spawn(self._seed_from_profiles())
        if self.load is not None:
            self._spawn(_every(self.load.REFRESH_EVERY_S, self.load.refresh))
        # The month's spending into memory now (budget checks then read no file), re-read
        # every few seconds for other writers of the same ledger; raw rows past the
        # retention window go once a day (their daily aggregates stay).
        self._spawn(_every(LEDGER_REFRESH_S, self._refresh_ledger))
        if self.settings.ledger_retention_days:
            self._spawn(_every(86_400, self._prune_ledger))
        routing = self.settings.routing
        if self.classifier is None and routing.classifier and routing.strategy == "smart" and self.remotes:
            self.classifier = await self._load_classifier()
        if self.settings.cache.enabled:
            self.cache = await self._open_cache()
        if self.settings.calibration.enabled and self.remotes:
            self.teacher = await asyncio.to_thread(self._open_teacher)
        if self.fleet is not None:  # the fleet's answers and labels, as [fleet] share_* say
            self.fleet.share(self.cache, self.teacher)

    def _open_teacher(self) -> Teacher:
        path = self.ledger.path.with_suffix(".calibration.sqlite3")
        store = CalibrationStore(path, max_labels=self.settings.calibration.max_labels)
        encoder = self.classifier.encoder if self.classifier is not None else (
            self.cache.encoder if self.cache is not None else None)
        teacher = Teacher(store, encoder, keep_text=self.settings.log_content, settings=self.settings.calibration)
        teacher.refit()  # at start: labels from earlier runs count
        return teacher

    def _refresh_ledger(self) -> None:
        self.ledger.spent_this_month_usd()  # loads the month if it is new (a new month began)
        self.ledger.refresh()

    def _prune_ledger(self) -> None:
        cutoff = time.time() - self.settings.ledger_retention_days * 86_400
        if (n := self.ledger.prune(cutoff)):
            log.info("ledger rows past retention deleted", extra={"rows": n, "retention_days":
                                                                   self.settings.ledger_retention_days})

    def _spawn(self, work: Any) -> None:
        self._tasks.append(asyncio.create_task(work))

    def _heartbeat(self) -> dict[str, Any]:
        """What this box's fleet heartbeat says about it."""
        from edge import __version__

        return {"version": __version__, "model": self.default_model,
                "uptime_s": round(time.monotonic() - self.started_at, 1),
                "spend_today_usd": round(self.ledger.spent_today_usd(), 6)}  # from memory (the month is loaded)

    async def close(self) -> None:
        self._stop_profiles.set()  # a profile measuring in a thread stops at its next token
        if self.fleet is not None:
            await self.fleet.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(b.close() for b in self.local.values()),
                             *(st.backend.close() for st in self.remotes.values()))
        self.ledger.close()
        if self.teacher is not None:
            await asyncio.to_thread(self.teacher.store.close)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.close)
        await asyncio.to_thread(self.tracer.shutdown)

    async def _load_classifier(self) -> DifficultyClassifier | None:
        from edge.router.classifier import DifficultyClassifier

        try:
            return await asyncio.to_thread(DifficultyClassifier.from_models_dir, self.models_dir)
        except ModelNotFound as exc:
            log.info("difficulty classifier not installed; the difficulty step is skipped", extra={"why": str(exc)})
        except ModelError as exc:
            log.warning("difficulty classifier unusable; the difficulty step is skipped", extra={"error": str(exc)})
        return None

    async def _open_cache(self) -> CachePolicy:
        c = self.settings.cache
        encoder = None  # an edge.router.classifier.SentenceEncoder for semantic matches
        if c.semantic:
            if self.classifier is not None:
                encoder = self.classifier.encoder  # one encoder in memory for both
            else:
                from edge.router.classifier import SentenceEncoder

                try:
                    encoder = await asyncio.to_thread(SentenceEncoder.from_models_dir, self.models_dir)
                except ModelError as exc:
                    log.warning("semantic cache off: the encoder is not usable; exact matches only",
                                extra={"error": str(exc)})
        path = Path(c.path).expanduser() if c.path else self.ledger.path.with_suffix(".answers.sqlite3")
        cache = await asyncio.to_thread(CachePolicy, self.settings, path, encoder)
        log.info("answer cache open", extra={"path": str(path), "semantic": encoder is not None})
        return cache

    async def _seed_from_profiles(self) -> None:
        """Seed each model file's rate estimates from its stored profile, measuring one
        (bounded, off the loop) when none is stored and profile_on_start is set; with
        n_threads = 0 (auto), switch the model to the profile's fastest thread count."""
        from edge.profiler import collect_hardware

        try:
            self.hardware = await asyncio.to_thread(collect_hardware, bandwidth=False)
        except Exception as exc:  # noqa: BLE001 - collect_hardware never raises by contract; belt and braces
            log.warning("hardware probe failed", extra={"error": str(exc)})
        for name, model in self.local.items():
            target = model.profile_target
            if target is None:
                continue
            profile = await self._measured(name, target)
            if profile is None:
                continue
            await self._apply_profile(name, model, profile)
            if profile.noisy and self.settings.routing.profile_on_start:
                self._spawn(self._remeasure(name, model, target))

    async def _measured(self, name: str, target: Any, *, fresh: bool = False) -> Any:
        """The profile (off the loop), or None when there is none or it failed: profiling
        must never take the daemon down."""
        from edge.profiler import ProfileCancelled

        try:
            return await asyncio.to_thread(self._profile_for, name, target, fresh)
        except ProfileCancelled:
            return None
        except Exception as exc:  # noqa: BLE001
            log.warning("profile unavailable", extra={"model": name, "error": str(exc)})
            return None

    async def _remeasure(self, name: str, model: LocalModel, target: Any) -> None:
        from edge.profiler.remeasure import machine_idle, remeasure_when_idle

        def busy() -> bool:
            return model.queue.waiting > 0 or model.queue.active > 0

        await remeasure_when_idle(
            measure=lambda: self._measured(name, target, fresh=True),
            idle=lambda: asyncio.to_thread(machine_idle, busy),
            apply=lambda p: self._apply_profile(name, model, p), name=name)

    def _profile_for(self, name: str, target: Any, fresh: bool = False) -> Any:
        """Blocking: the stored profile (or a fresh one with profile_on_start, or `fresh`)."""
        from edge.profiler import ensure_profile, load_profile

        routing = self.settings.routing
        if routing.profile_on_start or fresh:
            from edge.profiler import ProfileCancelled

            try:
                return ensure_profile(target.path, target.sha256, budget_s=routing.profile_budget_s, name=name,
                                      cancel=self._stop_profiles, fresh=fresh)
            except ProfileCancelled:
                # Said here, in the worker thread: the task that awaited it is cancelled by now.
                log.info("profile stopped: the daemon is shutting down", extra={"model": name})
                raise
        if self.hardware is None:
            return None
        import llama_cpp

        return load_profile(self.hardware.fingerprint, target.sha256, llama_cpp.__version__)

    async def _apply_profile(self, name: str, model: LocalModel, profile: Any) -> None:
        """Seed the rate estimates and (n_threads = 0) pick the thread count that serves this
        deployment's requests fastest: the shape seen so far, else a typical chat turn."""
        from edge.profiler.measure import TYPICAL_GEN, TYPICAL_PROMPT

        self.profiles[name] = profile
        est = self.estimates[name]
        best = profile.best_threads_for(est.prompt_tokens.value or TYPICAL_PROMPT,
                                        est.completion_tokens.value or TYPICAL_GEN)
        rates = next((t for t in profile.by_threads if t.threads == best), None)
        prompt_tps, gen_tps = (rates.prompt_tps, rates.gen_tps) if rates else (profile.prompt_tps, profile.gen_tps)
        if est.prompt_tps.value is None or profile.measured_at > est.seeded_at:
            est.seed(prompt_tps, gen_tps, at=profile.measured_at)
        threads = model.describe().n_threads
        if self.settings.local.n_threads == 0 and best != threads:
            await asyncio.to_thread(model.set_threads, best)
        log.info("profile applied", extra={"model": name, "prompt_tps": round(prompt_tps, 1),
                                           "gen_tps": round(gen_tps, 1), "threads": model.describe().n_threads,
                                           "noisy": profile.noise_reason or False})

    # -- what status and metrics read -------------------------------------------------------

    def network(self) -> str:
        """'local-only' (no remote tier, or routing.local_only), 'offline', 'up' (a remote
        backend is usable) or 'down'."""
        if self.settings.routing.offline and (self.settings.onprem or self.settings.cloud):
            return "offline"
        if not self.remotes or self.settings.routing.local_only:
            return "local-only"
        return "up" if any(st.usable for st in self.remotes.values()) else "down"

    def snapshot(self, *, budgets: bool = True) -> Snapshot:
        """Live state in one read. With `budgets` it reads the ledger: call it off the loop."""
        return Snapshot(
            uptime_s=time.monotonic() - self.started_at, default_model=self.default_model, network=self.network(),
            models=[self._model_snapshot(name, m) for name, m in self.local.items()],
            backends=[_backend_snapshot(name, st) for name, st in self.remotes.items()],
            budgets=self._budgets() if budgets else [],
            cache_entries=len(self.cache.cache) if self.cache is not None else None,
            cache_refused=dict(self.cache.cache.refused) if self.cache is not None else {},
            hardware=self.hardware, router=self._router_snapshot() if budgets else None,
            fleet=self.fleet.snapshot() if self.fleet is not None else None)

    def _router_snapshot(self) -> RouterFitSnapshot | None:
        """Blocking (counts the labels): the router's fit, for status and metrics."""
        t = self.teacher
        if t is None:
            return None
        shadows = self.shadow_samples() if self.shadow_samples is not None else 0
        if t.fitted is None:
            return RouterFitSnapshot(labels=len(t.store), fitted=False, shadow_samples=shadows)
        p = t.fitted.point
        return RouterFitSnapshot(labels=len(t.store), fitted=True, threshold=p.threshold,
                                 estimated_agreement=p.estimated_agreement, remote_share=p.remote_share,
                                 target=p.target, shadow_samples=shadows)

    def _model_snapshot(self, name: str, m: LocalModel) -> ModelSnapshot:
        s, q, est = m.stats, m.queue, self.estimates[name]
        return ModelSnapshot(
            description=m.describe(), state=m.state, queue_depth=q.waiting, queue_capacity=q.max_waiting,
            active=q.active, requests_total=s.requests_total, rejected_total=s.rejected_total,
            cancelled_total=s.cancelled_total, tokens_generated_total=s.tokens_generated_total,
            last_completion_tokens=s.last_completion_tokens, profiled=name in self.profiles,
            prompt_tokens_per_second=est.prompt_tps.value, generation_tokens_per_second=est.gen_tps.value)

    def _budgets(self) -> list[BudgetSnapshot]:
        status = self.ledger.budget_status(self.settings.cost)
        return [BudgetSnapshot(period, w.spent_usd, w.limit_usd, w.remaining_usd)
                for period, w in (("day", status.day), ("month", status.month))]


def _backend_snapshot(name: str, st: RemoteState) -> BackendSnapshot:
    b = st.breaker
    return BackendSnapshot(
        name=name, tier=st.tier, kind=st.backend.kind, model=st.backend.model, breaker=b.state,
        consecutive_failures=b.consecutive_failures, breaker_opened_total=b.opened_total, retry_in_s=_retry_in(st),
        outstanding=st.outstanding, requests_total=st.requests_total, failures_total=st.failures_total,
        out_of_rotation=st.out_of_rotation, capabilities=_capabilities(st.backend), probing=st.probing)


def _retry_in(st: RemoteState) -> float:
    """Seconds until something can bring an open breaker back: its cooldown's end, or the
    background probe's next look when that comes first; 0 while a probe is in flight."""
    if st.breaker.state != BreakerState.OPEN or st.probing:
        return 0.0
    wait = st.breaker.retry_in()
    if st.next_probe_at > 0:
        wait = min(wait, max(0.0, st.next_probe_at - time.monotonic()))
    return wait


def _capabilities(backend: object) -> str:
    caps = getattr(backend, "caps", None)  # remote HTTP backends have them; test doubles may not
    return caps.describe() if caps is not None else ""


async def _every(seconds: float, work: Callable[[], None]) -> None:
    """Run blocking `work` on a thread now and every `seconds` (the sensors' refresh)."""
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception as exc:  # noqa: BLE001 - a sensor read must never take the daemon down
            log.debug("background refresh failed", extra={"error": str(exc)})
        await asyncio.sleep(seconds)
