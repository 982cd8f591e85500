"""Fit the router to the deployment's own labels, toward the operator's target.

The score. For a new prompt, its nearest labelled prompts (cosine of MiniLM
embeddings, the `k` most similar) vote on whether the local answer would not do,
weighted by similarity; the shipped classifier's score joins as a prior worth
`prior_weight` votes. So with few labels the prior decides, and as the deployment's
own traffic accumulates, it takes over, whatever the prior got wrong.

The operating point. Every label is scored leave-one-out; a threshold sends what
scores at or above it remote. Remote answers count as right (the remote tier is the
teacher), local ones as right when their label agrees. The operator states one target:
`quality` (the estimated agreement with the remote tier, e.g. 0.95): the highest
threshold (the fewest remote) that meets it; or `spend` (the remote share, e.g. 0.30):
the threshold that sends that share. Below `min_labels` labels the shipped prior and
its configured threshold stay in force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.calibration.store import Label

__all__ = ["OperatingPoint", "Calibrator", "fit"]


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float            # calibrated score at or above which requests go remote
    labels: int                 # how many labels the fit used
    estimated_agreement: float  # with the remote tier, at this threshold, on the labels (leave-one-out)
    remote_share: float         # share of the labelled traffic sent remote at this threshold
    target: str                 # "quality 0.95" or "spend 0.30"
    curve: tuple[tuple[float, float, float], ...] = ()  # (threshold, remote share, agreement), for status

    def describe(self) -> str:
        return (f"fit on {self.labels} labels: threshold {self.threshold:.2f}, estimated agreement "
                f"{self.estimated_agreement:.2f}, remote share {self.remote_share:.2f} ({self.target})")


class Calibrator:
    """Scores prompts from labelled neighbours; see the module docstring."""

    def __init__(self, embeddings: np.ndarray, wrong: np.ndarray, *, k: int = 15, prior_weight: float = 2.0) -> None:
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.where(norms == 0, 1, norms)).astype(np.float32)
        self.wrong = wrong.astype(np.float32)
        self.k, self.prior_weight = min(k, len(wrong)), prior_weight

    def score(self, vector: np.ndarray, prior: float) -> float:
        """P(the local answer would not do) for a prompt with this embedding and prior score."""
        v = vector / (np.linalg.norm(vector) or 1.0)
        sims = self.embeddings @ v.astype(np.float32)
        return self._vote(sims, prior)

    def _vote(self, sims: np.ndarray, prior: float) -> float:
        k = min(self.k, len(sims))
        if k <= 0:
            return prior
        near = np.argpartition(-sims, k - 1)[:k]
        w = np.clip(sims[near], 0.0, None)
        return float((w @ self.wrong[near] + self.prior_weight * prior) / (w.sum() + self.prior_weight))

    def leave_one_out(self, priors: np.ndarray, sims: np.ndarray | None = None) -> np.ndarray:
        """Each label scored by the others (`sims`: the labels' similarity matrix, if known)."""
        if sims is None:
            sims = self.embeddings @ self.embeddings.T
        sims = sims.copy()
        np.fill_diagonal(sims, -np.inf)
        return np.array([self._vote(sims[i], float(priors[i])) for i in range(len(priors))])


def _point(scores: np.ndarray, wrong: np.ndarray, target: str, value: float) -> tuple[float, float, float, list]:
    """(threshold, agreement, remote share, curve) for the target, sweeping every distinct score."""
    n = len(scores)
    candidates = np.unique(np.concatenate([scores, [1.01]]))
    curve = []
    for t in candidates:
        remote = scores >= t
        agreement = 1.0 - float(wrong[~remote].sum()) / n
        curve.append((float(t), float(remote.mean()), agreement))
    if target == "quality":
        meets = [c for c in curve if c[2] >= value]
        t, share, agreement = max(meets, key=lambda c: c[0]) if meets else min(curve, key=lambda c: c[0])
    else:
        t, share, agreement = min(curve, key=lambda c: (abs(c[1] - value), -c[0]))
    return t, agreement, share, curve


# Neighbours and the prior's weight are chosen per fit, on the labels alone (leave-one-out
# log-loss): a deployment whose prior is good leans on it, one whose prior is wrong does not.
_K = (5, 10, 20, 40)
_PRIOR_WEIGHTS = (0.25, 1.0, 4.0)


def _select(emb: np.ndarray, wrong: np.ndarray, priors: np.ndarray) -> tuple[Calibrator, np.ndarray]:
    """The (k, prior weight) with the lowest leave-one-out log-loss, and its LOO scores."""
    candidates = [Calibrator(emb, wrong, k=k, prior_weight=w) for k in _K for w in _PRIOR_WEIGHTS]
    sims = candidates[0].embeddings @ candidates[0].embeddings.T  # the same for every candidate

    def loss(scores: np.ndarray) -> float:
        p = np.clip(scores, 1e-3, 1 - 1e-3)
        return float(-np.mean(wrong * np.log(p) + (1 - wrong) * np.log(1 - p)))

    scored = [(c, c.leave_one_out(priors, sims)) for c in candidates]
    return min(scored, key=lambda cs: loss(cs[1]))


def fit(labels: Sequence[Label], *, target: str = "quality", value: float = 0.95, min_labels: int = 50,
        default_prior: float = 0.5) -> tuple[Calibrator, OperatingPoint] | None:
    """The calibrator and its operating point from `labels` (those with an embedding);
    None below `min_labels`."""
    usable = [x for x in labels if x.embedding is not None]
    if len(usable) < min_labels:
        return None
    emb = np.stack([np.asarray(x.embedding, dtype=np.float32) for x in usable])
    wrong = np.array([0.0 if x.agrees else 1.0 for x in usable])
    priors = np.array([default_prior if x.difficulty is None else x.difficulty for x in usable])
    calibrator, scores = _select(emb, wrong, priors)
    t, agreement, share, curve = _point(scores, wrong, target, value)
    step = max(1, len(curve) // 20)
    point = OperatingPoint(threshold=t, labels=len(usable), estimated_agreement=agreement, remote_share=share,
                           target=f"{target} {value:g}", curve=tuple(curve[::step]))
    return calibrator, point
