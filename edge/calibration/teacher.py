"""The teacher: when the cascade escalates, the local answer it abandoned and the remote
answer that replaced it make a label (would the local answer have done?), stored for
the router to learn this deployment's traffic from. Off the request path: the client
has its answer before the label is computed, on the store's own thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import logging
from collections import deque

import numpy as np

from edge.calibration.agreement import agree
from edge.calibration.fit import Fit, fit
from edge.calibration.store import CalibrationStore, Label
from edge.config import CalibrationSettings

if TYPE_CHECKING:
    from edge.pipeline.chain import Served
    from edge.pipeline.planning import Plan

__all__ = ["Teacher"]

log = logging.getLogger("edge.calibration")

SPEND_WINDOW = 500      # recent requests' scores a spend target is held over
SPEND_MIN_SCORES = 50   # before that many, the fit's threshold (chosen on the labels) stands


class Teacher:
    def __init__(self, store: CalibrationStore, encoder: Any = None, *, keep_text: bool = False,
                 settings: CalibrationSettings | None = None) -> None:
        """`encoder`: the router's SentenceEncoder (for the meaning rule and the prompt's
        embedding); `keep_text`: store prompt and answers too (settings.log_content)."""
        self.store, self.encoder, self.keep_text = store, encoder, keep_text
        self.settings = settings or CalibrationSettings()
        # The fit once min_labels labels exist; swapped whole, read by the planner.
        self.fitted: Fit | None = None
        self._since_fit = 0
        # The fit's scores of recent requests: a spend target is held as their quantile,
        # so the share sent remote follows the traffic as it is, not as the labels were.
        self.recent_scores: deque[float] = deque(maxlen=SPEND_WINDOW)
        # Called on the store's thread with each label this teacher stores (edge.fleet.labels
        # publishes them to the fleet); must not block.
        self.on_label: Callable[[Label], None] | None = None

    def spend_threshold(self) -> float | None:
        """With target = 'spend' and enough recent scores: the score above which the target
        share of recent requests lay; None otherwise (the fit's own threshold then)."""
        if self.settings.target != "spend" or len(self.recent_scores) < SPEND_MIN_SCORES:
            return None
        return float(np.quantile(np.fromiter(self.recent_scores, float), 1.0 - self.settings.spend_target))

    def refit(self) -> None:
        """Blocking (the store's thread): fit on the most recent labels, toward the target."""
        s = self.settings
        value = s.quality_target if s.target == "quality" else s.spend_target
        result = fit(self.store.recent(s.fit_window), target=s.target, value=value, min_labels=s.min_labels)
        self._since_fit = 0
        if result is not None:
            self.fitted = result
            log.info("router fitted to this deployment", extra={"fit": result.point.describe()})

    def observe(self, plan: Plan, served: Served, remote_text: str) -> None:
        """Label an escalated cascade answer (the abandoned local text against the remote one)."""
        v = served.verdict
        if v is None or not v.escalate or served.candidate.remote is None or not served.abandoned:
            return
        self.observe_pair(plan, served.abandoned, remote_text, source="cascade", confidence=v.confidence)

    def observe_pair(self, plan: Plan, local: str, remote_text: str, *, source: str, confidence: Any = None) -> None:
        """Label one (local answer, remote answer) pair for `plan`'s request, on the store's thread."""
        prompt = next((m.content for m in reversed(plan.request.generation.messages) if m.role == "user"), "")
        vector = plan.lookup.vector
        conf, prior = confidence, plan.prior  # the shipped classifier's score: the next fit's prior

        def label() -> None:
            embed = self.encoder.embed if self.encoder is not None else None
            verdict = agree(local, remote_text, embed)
            if verdict.agrees is None:
                return  # the rule cannot tell: no label is better than a guess
            embedding = vector if vector is not None else (embed(prompt) if embed is not None else None)
            self._store_and_maybe_refit(Label(
                source=source, agrees=verdict.agrees, rule=verdict.rule, difficulty=prior,
                conf_mean=conf.mean if conf else None, conf_min=conf.minimum if conf else None,
                tokens=conf.tokens if conf else None, embedding=embedding, ts=time.time(),
                prompt=prompt if self.keep_text else None, local_text=local if self.keep_text else None,
                remote_text=remote_text if self.keep_text else None))

        self.store.submit(label)

    def _store_and_maybe_refit(self, label: Label) -> None:
        self.store._write(label)  # noqa: SLF001 - on the store's own thread already
        if self.on_label is not None:
            self.on_label(label)
        self._since_fit += 1
        if self._since_fit >= self.settings.refit_every:
            self.refit()
