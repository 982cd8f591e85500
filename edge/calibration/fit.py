"""Fit the router to the deployment's own labels, toward the operator's target.

Before the answer: the neighbours, at two distances. For a new prompt, its broad
neighbourhood (the 20 or 40 most similar labelled prompts, cosine of MiniLM embeddings)
gives a rate: how often the local answer would not do for prompts of this kind, with
the shipped classifier's score as a prior worth a few votes. Then its nearest few
labels vote, each weighted by exp((similarity - 1) / tau), with that rate as their
fallback: a near-repeat of a labelled prompt decides, and where there is none (a
question whose numbers never recur) the score is the kind's rate, not the verdicts of
three loose look-alikes. With few labels the prior decides; as the deployment's own
traffic accumulates, it takes over, whatever the prior got wrong. Both neighbourhoods
(k, tau and the fallback's weight) are chosen per fit by leave-one-out log-loss. Until
this version the nearest few fell back on the shipped prior directly; on six dev draws
of the calibration benchmark (9 stream orders each) the two distances raised the mean
share of the oracle's saving on CPT(95%) by 2-8 points (APGR by 1-2).
A linear read of the embedding then joins the neighbours' vote (a logistic regression
on the vote's logit and the embedding, strongly regularised): where the neighbours are
few or noisy, a direction in embedding space shared by many labels ("asks for a
conversion", "names a colour") still counts.

After the first sentence: the head. Labels from cascaded answers also carry the local
answer's confidence at the gate (mean and lowest token log-probability). A logistic
head reads P(the local answer would not do) from the neighbours' score (its logit,
leave-one-out) and those two figures. It is kept only when it predicts the labels
better than the neighbours alone (5-fold cross-validated log-loss): on a deployment
where the model's confidence means nothing, the fit does without it.

The operating point. Every label is scored without seeing itself (leave-one-out for
the neighbours, cross-validated for the head); a threshold sends what scores at or
above it remote. Remote answers count as right (the remote tier is the teacher), local
ones as right when their label agrees. The operator states one target: `quality` (the
estimated agreement with the remote tier, e.g. 0.95): the highest threshold (the
fewest remote) that meets it; or `spend` (the remote share, e.g. 0.30): the threshold
that sends that share, on the neighbours' score alone (known before the answer, so the
share holds however the answers turn out). Below `min_labels` labels the shipped prior
and its configured threshold stay in force.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.calibration.store import Label

__all__ = ["Calibrator", "Fit", "Head", "OperatingPoint", "fit"]


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float            # score (P of a wrong local answer) at or above which requests go remote
    labels: int                 # how many labels the fit used
    estimated_agreement: float  # with the remote tier, at this threshold, on the labels (held out)
    remote_share: float         # share of the labelled traffic sent remote at this threshold
    target: str                 # "quality 0.95" or "spend 0.30"
    curve: tuple[tuple[float, float, float], ...] = ()  # (threshold, remote share, agreement), for status
    reads_confidence: bool = False  # the head (the answer's confidence) is part of the score

    def describe(self) -> str:
        how = ", with the answer's confidence" if self.reads_confidence else ""
        return (f"fit on {self.labels} labels{how}: threshold {self.threshold:.2f}, estimated agreement "
                f"{self.estimated_agreement:.2f}, remote share {self.remote_share:.2f} ({self.target})")


@dataclass(frozen=True)
class Neighbourhood:
    """A vote of the `k` most similar labels, each weighted by exp((similarity - 1) / tau),
    with a fallback score worth `weight` votes."""

    k: int
    tau: float
    weight: float


class Calibrator:
    """Scores prompts from labelled neighbours; see the module docstring."""

    def __init__(self, embeddings: np.ndarray, wrong: np.ndarray, *,
                 near: Neighbourhood = Neighbourhood(5, 0.03, 1.0),
                 broad: Neighbourhood = Neighbourhood(40, 1.0, 0.5)) -> None:
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.where(norms == 0, 1, norms)).astype(np.float32)
        self.wrong = wrong.astype(np.float32)
        self.near, self.broad = near, broad
        # Weights of the linear read over _stack_features (set by fit); None: the vote alone.
        self.linear: np.ndarray | None = None

    def score(self, vector: np.ndarray, prior: float) -> float:
        """P(the local answer would not do) for a prompt with this embedding and prior score."""
        v = vector / (np.linalg.norm(vector) or 1.0)
        sims = (self.embeddings @ v.astype(np.float32))[None, :]
        top, idx = _nearest(sims, max(self.near.k, self.broad.k))
        vote = _two_level_vote(top, idx, self.wrong, np.array([prior]), self.near, self.broad)
        if self.linear is None:
            return float(vote[0])
        z = float(_stack_features(vote, v[None, :])[0] @ self.linear)
        return 1 / (1 + math.exp(-max(-50.0, min(50.0, z))))


def _nearest(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` highest similarities, most similar first, and their columns."""
    k = max(1, min(k, sims.shape[1]))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _vote(top: np.ndarray, idx: np.ndarray, wrong: np.ndarray, fallback: np.ndarray, hood: Neighbourhood
          ) -> np.ndarray:
    """Each row's vote of its `hood.k` nearest labels (columns of `top`/`idx`, nearest
    first; -inf similarities, such as a label's own in leave-one-out, count for nothing)."""
    s = top[:, :hood.k]
    w = np.where(np.isfinite(s), np.exp((np.minimum(s, 1.0) - 1.0) / hood.tau), 0.0)
    return ((w * wrong[idx[:, :hood.k]]).sum(axis=1) + hood.weight * fallback) / (w.sum(axis=1) + hood.weight)


def _two_level_vote(top: np.ndarray, idx: np.ndarray, wrong: np.ndarray, priors: np.ndarray,
                    near: Neighbourhood, broad: Neighbourhood) -> np.ndarray:
    """The broad neighbourhood's rate (the shipped prior as its fallback), then the few
    nearest labels' vote with that rate as theirs."""
    return _vote(top, idx, wrong, _vote(top, idx, wrong, priors, broad), near)


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(q / (1 - q))


def _features(scores: np.ndarray, mean: np.ndarray, minimum: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(scores)), _logit(scores), mean, minimum])


# The embedding's columns are scaled up against the penalty: an L2 of 1 on 3x the unit
# vector lets a direction shared by many labels count without letting 384 weights
# memorise 150 labels. Fixed, not searched: choosing it per fit by cross-validated
# log-loss did worse on the benchmark's shuffles (the log-loss of a few hundred labels
# is too noisy to choose by).
_EMBEDDING_SCALE = 3.0


def _stack_features(votes: np.ndarray, unit_embeddings: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(votes)), _logit(votes), _EMBEDDING_SCALE * unit_embeddings])


def _cross_validated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's P(wrong) from a logistic regression fitted on the other folds."""
    held_out = np.empty(len(y))
    folds = np.arange(len(y)) % _FOLDS  # labels are in time order: each fold spans the whole window
    for f in range(_FOLDS):
        w = _logistic(x[folds != f], y[folds != f])
        held_out[folds == f] = 1 / (1 + np.exp(-(x[folds == f] @ w)))
    return held_out


def _linear_read(calibrator: Calibrator, votes: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Give `calibrator` its linear read of the embedding (from the labels' leave-one-out
    votes) and return each label's score with it, cross-validated. With too few labels,
    or only one verdict, the vote stays alone."""
    if len(wrong) < _HEAD_MIN_LABELS or min(wrong.sum(), len(wrong) - wrong.sum()) < 5:
        return votes
    x = _stack_features(votes, calibrator.embeddings.astype(np.float64))
    held_out = _cross_validated(x, wrong)
    calibrator.linear = _logistic(x, wrong)
    return held_out


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Weights of an L2-regularised logistic regression (the intercept unpenalised), by
    Newton's method. A harder prompt never makes a wrong answer less likely: when the
    score's weight (column 1) comes out negative, it is fitted again without it."""
    w = _newton(x, y, l2)
    if w[1] < 0:
        keep = np.ones(x.shape[1])
        keep[1] = 0.0
        w = _newton(x * keep, y, l2)
    return w


def _newton(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    w = np.zeros(x.shape[1])
    penalty = np.diag([0.0] + [l2] * (x.shape[1] - 1))
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + penalty @ w
        hess = x.T @ (x * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


@dataclass(frozen=True)
class Head:
    """P(the local answer would not do | the neighbours' score, the answer's confidence at the gate)."""

    weights: tuple[float, float, float, float]  # intercept, logit(score), mean log-prob, lowest log-prob
    # Readings of a confident and of a doubtful answer (the labels' 90th and 10th
    # percentiles of (mean, lowest)): what the planner assumes before the answer exists.
    confident: tuple[float, float]
    doubtful: tuple[float, float]

    def p(self, score: float, mean: float, minimum: float) -> float:
        w0, w1, w2, w3 = self.weights
        z = w0 + w1 * float(_logit(score)) + w2 * mean + w3 * minimum
        return 1 / (1 + math.exp(-max(-50.0, min(50.0, z))))

    def score_where(self, threshold: float, reading: tuple[float, float]) -> float:
        """The neighbours' score at which an answer with this (mean, lowest) reading reaches `threshold`."""
        w0, w1, w2, w3 = self.weights
        rest = float(_logit(threshold)) - w0 - w2 * reading[0] - w3 * reading[1]
        if w1 <= 0:  # the score does not matter here: the reading alone decides, for every score
            return 0.0 if rest <= 0 else 1.01
        z = rest / w1
        return float(1 / (1 + math.exp(-max(-50.0, min(50.0, z)))))


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-3, 1 - 1e-3)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


_HEAD_MIN_LABELS = 30  # labels with a confidence reading, and at least 5 of each verdict
_FOLDS = 5


def _head(scores: np.ndarray, mean: np.ndarray, minimum: np.ndarray, wrong: np.ndarray
          ) -> tuple[Head, np.ndarray] | None:
    """The head and its cross-validated predictions, or None when it does not beat the
    neighbours' held-out score alone (or has too little to go on, or reads the score backwards)."""
    n = len(wrong)
    if n < _HEAD_MIN_LABELS or min(wrong.sum(), n - wrong.sum()) < 5:
        return None
    x = _features(scores, mean, minimum)
    held_out = _cross_validated(x, wrong)
    w = _logistic(x, wrong)
    if _log_loss(held_out, wrong) >= _log_loss(scores, wrong):
        return None
    confident = (float(np.quantile(mean, 0.9)), float(np.quantile(minimum, 0.9)))
    doubtful = (float(np.quantile(mean, 0.1)), float(np.quantile(minimum, 0.1)))
    return Head(tuple(float(v) for v in w), confident, doubtful), held_out  # type: ignore[arg-type]


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


# Chosen per fit, on the labels alone (leave-one-out log-loss): a deployment whose prompts
# repeat nearly word for word trusts its nearest labels most (small tau); one whose prior
# is good leans on it in the broad vote, one whose prior is wrong does not.
_NEAR = tuple(Neighbourhood(k, t, w) for k in (3, 5, 10) for t in (0.01, 0.03, 0.1) for w in (0.5, 1.0, 2.0))
_BROAD = tuple(Neighbourhood(k, t, w) for k in (20, 40) for t in (0.1, 1.0) for w in (0.5, 2.0))


def _select(emb: np.ndarray, wrong: np.ndarray, priors: np.ndarray) -> tuple[Calibrator, np.ndarray]:
    """The neighbourhoods with the lowest leave-one-out log-loss, and their LOO scores."""
    calibrator = Calibrator(emb, wrong)
    sims = calibrator.embeddings @ calibrator.embeddings.T
    np.fill_diagonal(sims, -np.inf)  # a label never votes on itself
    top, idx = _nearest(sims, max(h.k for h in _NEAR + _BROAD))
    best: tuple[float, Neighbourhood, Neighbourhood, np.ndarray] | None = None
    for broad in _BROAD:
        rate = _vote(top, idx, calibrator.wrong, priors, broad)
        for near in _NEAR:
            loo = _vote(top, idx, calibrator.wrong, rate, near)
            loss = _log_loss(loo, wrong)
            if best is None or loss < best[0]:
                best = (loss, near, broad, loo)
    assert best is not None
    calibrator.near, calibrator.broad = best[1], best[2]
    return calibrator, best[3]


@dataclass(frozen=True)
class Fit:
    calibrator: Calibrator
    head: Head | None       # None: the answer's confidence does not help here (or a spend target)
    point: OperatingPoint   # in the head's terms when there is a head, else the neighbours'
    before: OperatingPoint  # on the neighbours' score alone: for requests no gate will judge


def fit(labels: Sequence[Label], *, target: str = "quality", value: float = 0.95, min_labels: int = 50,
        default_prior: float = 0.5) -> Fit | None:
    """The fit and its operating points from `labels` (those with an embedding); None below `min_labels`."""
    usable = [x for x in labels if x.embedding is not None]
    if len(usable) < min_labels:
        return None
    emb = np.stack([np.asarray(x.embedding, dtype=np.float32) for x in usable])
    wrong = np.array([0.0 if x.agrees else 1.0 for x in usable])
    priors = np.array([default_prior if x.difficulty is None else x.difficulty for x in usable])
    calibrator, votes = _select(emb, wrong, priors)
    scores = _linear_read(calibrator, votes, wrong)
    before = _operating_point(scores, wrong, target, value)
    read = np.array([x.conf_mean is not None and x.conf_min is not None for x in usable])
    head = None
    if target == "quality" and read.any():
        mean = np.array([x.conf_mean for x in usable], dtype=object)[read].astype(float)
        minimum = np.array([x.conf_min for x in usable], dtype=object)[read].astype(float)
        found = _head(scores[read], mean, minimum, wrong[read])
        if found is not None:
            head, held_out = found
            final = scores.copy()
            final[read] = held_out  # both are P(wrong); labels without a reading keep the neighbours'
            point = _operating_point(final, wrong, target, value, reads_confidence=True)
            return Fit(calibrator, head, point, before)
    return Fit(calibrator, head, before, before)


def _operating_point(scores: np.ndarray, wrong: np.ndarray, target: str, value: float, *,
                     reads_confidence: bool = False) -> OperatingPoint:
    t, agreement, share, curve = _point(scores, wrong, target, value)
    step = max(1, len(curve) // 20)
    return OperatingPoint(threshold=t, labels=len(scores), estimated_agreement=agreement, remote_share=share,
                          target=f"{target} {value:g}", curve=tuple(curve[::step]),
                          reads_confidence=reads_confidence)
