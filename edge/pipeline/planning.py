"""Plan a request: privacy guard, cache lookup, decide (pure policy), cost gate, signals,
weigh. The plan says who may answer, in what order, what leaves the device, and how
the cascade judges the local answer. Nothing here generates text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from edge.backends.base import GenerationRequest, LocalModel, Message
from edge.answer_cache import CachedAnswer
from edge.cache_policy import CachedBackend, CachePolicy, Lookup
from edge.config import Settings
from edge.cost_gate import CostGate
from edge.errors import ModelError
from edge.pipeline.candidates import Candidate, RemoteState
from edge.pipeline.cascade import CascadeGate, FittedLimits
from edge.privacy import Redactor, StreamRestorer, describe_kinds, find_pii_in
from edge.router import Signals, Thresholds, decide, weigh
from edge.router.classifier import last_user_message
from edge.router.estimates import LocalEstimate
from edge.router.load import CALM, LoadSource
from edge.router.policy import Decision
from edge.tracing import Span
from edge.types import Attempt, Request, Tier

if TYPE_CHECKING:
    from edge.calibration.teacher import Teacher
    from edge.router.classifier import DifficultyClassifier

__all__ = ["Plan", "Planner", "Redaction"]

log = logging.getLogger("edge.engine")

# Prompts longer than this are scanned for personal data off the event loop: ~60 us
# for a chat prompt, but up to ~150 ms for 64 KB of digits.
INLINE_SCAN_CHARS = 4096


@dataclass(frozen=True)
class Redaction:
    """Under privacy.pii = 'redact': `outbound` rewrites what remote tiers receive
    (placeholders, numbered per request, continuation text included); `restorer`
    puts the values back into the answer as it streams to the client. For a plan's
    step `outbound` also cuts the conversation before the step's ask (Request.private_context)."""

    outbound: Callable[[GenerationRequest], GenerationRequest]
    restorer: StreamRestorer


@dataclass
class Plan:
    request: Request
    lookup: Lookup                     # the cache query (and a fallback answer) for this request
    pii: list[str]                     # kinds of personal data found
    decision: Decision
    chain: list[Candidate]
    skipped: list[Attempt] = field(default_factory=list)  # ruled out by the cost gate, with why
    gate: CascadeGate | None = None
    redaction: Redaction | None = None
    difficulty: float | None = None    # the score the policy weighed (the fit's, once there is one)
    prior: float | None = None         # the shipped classifier's own score: what labels keep as the prior


class Planner:
    def __init__(self, settings: Settings, *, local: dict[str, LocalModel], remotes: dict[str, RemoteState],
                 default_model: str, cost_gate: CostGate, estimates: dict[str, LocalEstimate],
                 load: LoadSource | None) -> None:
        self.settings = settings
        self.local, self.remotes, self.default_model = local, remotes, default_model
        self.cost_gate, self.estimates, self.load = cost_gate, estimates, load
        configured = {Tier.ONPREM: bool(settings.onprem), Tier.CLOUD: bool(settings.cloud)}
        self.remote_tiers = tuple(t for t, on in configured.items() if on)
        r = settings.routing
        self.thresholds = Thresholds(difficulty=r.difficulty_threshold, cascade_band=r.cascade_band,
                                     max_queue_depth=r.max_queue_depth, local_slowdown=r.local_slowdown,
                                     memory_percent=r.memory_high_percent, battery_percent=r.battery_low_percent,
                                     cascade=r.cascade)
        # Set by the runtime once loaded (all optional, loaded after the models).
        self.classifier: DifficultyClassifier | None = None
        self.cache: CachePolicy | None = None
        self.teacher: Teacher | None = None  # its fit, once it has one, scores difficulty

    def _thresholds_now(self) -> Thresholds:
        """The configured thresholds, or the fit's once there is one. A fit whose head reads
        the answer's confidence sends remote at once only what even a confident answer
        would not save, keeps ungated only what even a doubtful one would, and leaves
        the rest to the cascade gate, which judges by the head (_arm_cascade)."""
        fitted = self.teacher.fitted if self.teacher is not None else None
        if fitted is None:
            return self.thresholds
        head, point = fitted.head, fitted.point
        if head is not None and self.thresholds.cascade:
            return replace(self.thresholds, difficulty=head.score_where(point.threshold, head.confident),
                           cascade_band=head.score_where(point.threshold, head.doubtful),
                           source=f" ({point.describe()})")
        point = fitted.before
        threshold = self.teacher.spend_threshold() if self.teacher is not None else None
        threshold = point.threshold if threshold is None else threshold
        return replace(self.thresholds, difficulty=threshold,
                       cascade_band=min(self.thresholds.cascade_band, threshold),
                       source=f" ({point.describe()})")

    async def plan(self, req: Request, span: Span) -> Plan | CachedAnswer:
        """The whole plan, or a cached answer to play back."""
        pii = await self.scan_pii(req)
        keep_local = bool(pii) and self.settings.privacy.pii == "keep_local"
        # A plan's step is answered with the conversation before it (which the scan leaves out:
        # it never leaves the device): its cached answer may draw on it, so it stays on the box.
        private = keep_local or bool(req.private_context)
        lookup = await self.cache.lookup(req, private) if self.cache is not None else Lookup(None)
        if lookup.hit is not None:
            return lookup.hit
        dspan = span.child("edge.decide")
        try:
            plan = await self._route(req, lookup, pii, keep_local)
        except BaseException as exc:
            dspan.end(exc)
            raise
        d = plan.decision
        dspan.set(tiers=[str(t) for t in d.tiers], reasons=[r.code for r in d.reasons], cascade=d.cascade, pii=pii)
        dspan.end()
        if d.cascade:
            self._arm_cascade(plan)
        if pii and self.settings.privacy.pii == "redact":
            plan.redaction = self.redaction()
        if req.private_context:
            plan.redaction = self._ask_alone(plan.redaction, req.private_context)
        return plan

    # -- the steps ---------------------------------------------------------------------

    async def scan_pii(self, req: Request) -> list[str]:
        """Kinds of personal data or secrets in the request, when some could leave the device:
        in every field a remote tier would receive (messages and stop sequences), and across them."""
        if self.settings.privacy.pii == "off" or not self.remotes:
            return []
        kinds = self.settings.privacy.pii_kinds
        g = req.generation
        texts = _outbound_texts(replace(g, messages=g.messages[req.private_context:]))

        def scan() -> list[str]:
            return find_pii_in(texts, kinds)

        if sum(len(t) for t in texts) > INLINE_SCAN_CHARS:
            return await asyncio.to_thread(scan)
        return scan()

    async def _route(self, req: Request, lookup: Lookup, pii: list[str], keep_local: bool) -> Plan:
        """decide -> cost gate -> signals -> weigh: the decision and the chain in order."""
        routing = self.settings.routing
        decision = decide(requested_model=req.model, preference=req.preference, local_models=list(self.local),
                          default_model=self.default_model, remote_tiers=self.remote_tiers,
                          chain=tuple(routing.chain), offline=routing.offline, local_only=routing.local_only,
                          sensitive=describe_kinds(pii) if keep_local else "")
        chain, skipped = await self.cost_gate.check(req, self._chain(decision))
        difficulty = prior = None
        if routing.strategy == "smart" and decision.open_choice:
            scored = await self._difficulty(req, lookup)
            difficulty, prior = scored if scored is not None else (None, None)
            signals = await self._signals(req, decision, any(c.remote for c in chain), difficulty)
            decision = weigh(decision, signals, self._thresholds_now())
            order = {t: i for i, t in enumerate(decision.tiers)}
            chain.sort(key=lambda c: order[c.tier])  # stable within a tier
        return Plan(req, lookup, pii, decision, chain, skipped, difficulty=difficulty, prior=prior)

    def _chain(self, decision: Decision) -> list[Candidate]:
        chain: list[Candidate] = []
        for tier in decision.tiers:
            if tier == Tier.LOCAL:
                chain.append(Candidate("local", Tier.LOCAL, self.local[decision.model], decision.model))
                continue
            states = [st for st in self.remotes.values() if st.tier == tier]
            if tier == Tier.ONPREM:
                # The pool: least outstanding requests first (stable for ties, so config order breaks them).
                states.sort(key=lambda st: st.outstanding)
            chain.extend(Candidate(st.backend.name, st.tier, st.backend, st.backend.model, st) for st in states)
        return chain

    async def _signals(self, req: Request, decision: Decision, remote_affordable: bool,
                       difficulty: float | None) -> Signals:
        """Measure what the policy weighs: predicted latencies, load, difficulty."""
        gen = req.generation
        queue = self.local[decision.model].queue
        first_remote = next((st for st in self.remotes.values() if st.tier == decision.tiers[0]), None)
        load = self.load.sample() if self.load is not None else CALM
        estimate = self.estimates[decision.model]
        return Signals(
            max_latency_ms=req.max_latency_ms,
            local_predicted_s=estimate.predict_s(
                prompt_tokens=gen.approx_prompt_tokens(), max_tokens=gen.params.max_tokens, waiting=queue.waiting),
            remote_predicted_s=first_remote.latency_s.value if first_remote is not None else None,
            remote_affordable=remote_affordable, queue_depth=queue.waiting,
            local_tps_now=estimate.gen_tps.value if self.load is not None else None,
            local_tps_profiled=estimate.profiled_gen_tps if self.load is not None else None,
            memory_percent=load.memory_percent, battery_percent=load.battery_percent,
            on_battery=load.on_battery, thermal_throttled=load.thermal_throttled,
            difficulty=difficulty)

    async def _difficulty(self, req: Request, lookup: Lookup) -> tuple[float, float] | None:
        """(score, prior) as _classify gives them, with a plan's verdict on its step: one
        that needs a capable model scores 1.0; one a small model can answer scores at most
        the cascade band, so it is answered locally and the gate checks its confidence
        (the planner has read the step; the classifier's prior was fit on other tasks)."""
        if req.capable:
            return 1.0, 1.0
        scored = await self._classify(req, lookup)
        if req.capable is None:
            return scored
        band = self._thresholds_now().cascade_band
        return (band, band) if scored is None else (min(scored[0], band), scored[1])

    async def _classify(self, req: Request, lookup: Lookup) -> tuple[float, float] | None:
        """(score, prior): the classifier's score twice, or once the router has a fit on this
        deployment's own labels, the fit's score with the classifier's as its prior
        (edge.calibration.fit).
        Reuses the cache lookup's embedding of the prompt when both share the encoder.
        None (the step is skipped) when there is no classifier or it fails at run time,
        exactly as when it failed to load."""
        clf = self.classifier
        if clf is None:
            return None
        messages = [(m.role, m.content) for m in req.generation.messages]
        fitted = self.teacher.fitted if self.teacher is not None else None
        try:
            if lookup.vector is not None and self.cache is not None and self.cache.encoder is clf.encoder:
                vector, tokens = lookup.vector, lookup.tokens
            elif fitted is not None:
                vector, tokens = await asyncio.to_thread(clf.encoder.embed_with_count, last_user_message(messages))
            else:
                prior = await asyncio.to_thread(clf.score, messages)
                return prior, prior
            prior = clf.score_embedding(last_user_message(messages), vector, tokens)
            if fitted is None:
                return prior, prior
            score = fitted.calibrator.score(vector, prior)
            if self.teacher is not None:
                self.teacher.recent_scores.append(score)
            return score, prior
        except ModelError as exc:
            log.warning("difficulty classifier failed; the difficulty step is skipped",
                        extra={"request_id": req.request_id, "error": str(exc)})
            return None

    def _arm_cascade(self, plan: Plan) -> None:
        """The local model answers first and is judged; if the escalation fails too, it
        answers after all (ungated: only the first candidate is judged), and a close
        cached answer from a remote tier waits just before it when the network is down."""
        chain = plan.chain
        if chain[0].remote is not None:
            return  # a cascade answers locally first; a chain without local first has nothing to judge
        fallback = plan.lookup.fallback
        if fallback is not None:
            chain.append(Candidate("cache", Tier.LOCAL, CachedBackend(fallback), fallback.model))
        plan.gate = CascadeGate(self.settings.routing, chain, cached_fallback=fallback is not None,
                                limits=self._fitted_limits(plan))
        chain.append(chain[0])

    def _fitted_limits(self, plan: Plan) -> FittedLimits | None:
        """The head of the router's fit, when it has one and scored this request."""
        fitted = self.teacher.fitted if self.teacher is not None else None
        if fitted is None or fitted.head is None or plan.difficulty is None or plan.prior is None:
            return None
        return FittedLimits(fitted.head, plan.difficulty, fitted.point.threshold, f" ({fitted.point.describe()})")

    def redaction(self) -> Redaction:
        """This request's redaction: one numbering for everything it sends out."""
        redactor = Redactor(self.settings.privacy.pii_kinds)

        def outbound(r: GenerationRequest) -> GenerationRequest:
            """Every text field, redacted together (a value split between two is still one)."""
            order = _scan_order(r)
            texts = redactor.redact_all([*(r.messages[i].content for i in order), *r.params.stop, r.assistant_prefix])
            content = dict(zip(order, texts))
            n, k = len(r.messages), len(r.params.stop)
            return replace(r, messages=tuple(Message(m.role, content[i]) for i, m in enumerate(r.messages)),
                           params=replace(r.params, stop=tuple(texts[n:n + k])), assistant_prefix=texts[-1])

        return Redaction(outbound, StreamRestorer(redactor))


    def _ask_alone(self, redaction: Redaction | None, n: int) -> Redaction:
        """A plan's step sends remote its ask alone: the `n` messages before it stay here."""
        base = redaction or Redaction(lambda r: r, StreamRestorer(Redactor(self.settings.privacy.pii_kinds)))

        def outbound(r: GenerationRequest) -> GenerationRequest:
            return base.outbound(replace(r, messages=r.messages[n:]))

        return Redaction(outbound, base.restorer)


def _scan_order(g: GenerationRequest) -> list[int]:
    """Message indices, the user's first (in order): a value a user splits over two turns
    is then contiguous when the texts are scanned joined, whatever the model said between."""
    return sorted(range(len(g.messages)), key=lambda i: g.messages[i].role != "user")


def _outbound_texts(g: GenerationRequest) -> list[str]:
    """The request's text fields a remote tier receives, in scan order: messages, then stop."""
    return [g.messages[i].content for i in _scan_order(g)] + list(g.params.stop)
