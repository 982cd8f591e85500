"""The cascade's gate: keep the local model's answer, or escalate it?

The local model answers first and its text is held back. At the end of the answer's
first sentence, after `cascade_holdback_tokens` tokens, or at the end of the answer,
whichever comes first (edge.confidence.GatePoint), the gate reads the running
log-probabilities and returns a Verdict. The chain runner acts on it; the result
builder reports it. Nothing is passed back through shared lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.backends.base import Chunk
from edge.config import RoutingSettings
from edge.confidence import Confidence, GatePoint, is_confident
from edge.pipeline.candidates import Candidate

if TYPE_CHECKING:
    from edge.calibration.fit import Head

__all__ = ["CascadeGate", "FittedLimits", "Limits", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    escalate: bool   # abandon the local answer (unseen by the client); the next candidate answers
    why: str         # the figures judged ("" when there was nothing to judge: an empty answer)
    # The local answer would have been escalated, but nothing after it can answer: it stands.
    kept: bool = False
    confidence: Confidence | None = None  # the figures the verdict was made on

    @property
    def confident(self) -> bool:
        return not self.escalate and not self.kept and bool(self.why)


class Limits:
    """The configured limits: confident when the mean and the lowest token log-probability
    are at or above routing.cascade_min_mean_logprob and cascade_min_token_logprob."""

    def __init__(self, routing: RoutingSettings) -> None:
        self._r = routing

    def judge(self, conf: Confidence) -> tuple[bool, str]:
        r = self._r
        return (is_confident(conf, min_mean=r.cascade_min_mean_logprob, min_token=r.cascade_min_token_logprob),
                f"mean log-prob {conf.mean:.2f} (min {r.cascade_min_mean_logprob}), lowest token "
                f"{conf.minimum:.2f} (min {r.cascade_min_token_logprob})")


class FittedLimits:
    """The router's fit on this deployment's labels (edge.calibration.fit.Head): confident
    when P(the local answer would not do), read from the prompt's difficulty score and
    the answer's log-probabilities, is below the operating point's threshold."""

    def __init__(self, head: Head, difficulty: float, threshold: float, source: str) -> None:
        self.head, self.difficulty, self.threshold, self.source = head, difficulty, threshold, source

    def judge(self, conf: Confidence) -> tuple[bool, str]:
        p = self.head.p(self.difficulty, conf.mean, conf.minimum)
        sign = "<" if p < self.threshold else ">="
        return (conf.tokens > 0 and p < self.threshold,
                f"P(the local answer would not do) {p:.2f} {sign} {self.threshold:.2f} from difficulty "
                f"{self.difficulty:.2f}, mean log-prob {conf.mean:.2f} and lowest token {conf.minimum:.2f}"
                f"{self.source}")


class CascadeGate:
    """Judges the first candidate of a cascade chain (the local model) by `limits`
    (the configured Limits unless the router's fit reads the answer's confidence).

    Escalating needs somewhere to go: when no remote candidate in the chain can be
    reached (breakers open, out of rotation) and no close cached answer waits at the
    end of it, an unconfident answer is kept, and the verdict says so.
    """

    def __init__(self, routing: RoutingSettings, chain: Sequence[Candidate], *, cached_fallback: bool,
                 limits: Limits | FittedLimits | None = None) -> None:
        self._chain = chain
        self._cached_fallback = cached_fallback
        self._limits = limits or Limits(routing)
        self._point = GatePoint(routing.cascade_holdback_tokens, first_sentence=routing.cascade_first_sentence)

    def judge(self, chunk: Chunk) -> Verdict | None:
        """None while the gate point is not reached (hold the text), then the verdict."""
        if not self._point.reached(chunk.text, chunk.completion_tokens, finished=chunk.finish_reason is not None):
            return None
        if chunk.logprob_mean is None or chunk.logprob_min is None:
            return Verdict(escalate=False, why="")  # nothing to judge (an empty answer): keep it
        conf = Confidence(chunk.logprob_mean, chunk.logprob_min, chunk.completion_tokens)
        judged = self._point.judged
        judged = judged if judged.endswith(" tokens") else f"{judged} ({conf.tokens} tokens)"
        confident, figures = self._limits.judge(conf)
        figures = f"{figures} over {judged}"
        if confident:
            return Verdict(escalate=False, why=f"the local model was confident: {figures}", confidence=conf)
        why = f"not confident: {figures}"
        if self._escalation_possible():
            return Verdict(escalate=True, why=why, confidence=conf)
        return Verdict(escalate=False, why=why, kept=True, confidence=conf)

    def _escalation_possible(self) -> bool:
        return self._cached_fallback or any(c.remote is not None and c.remote.usable for c in self._chain)
