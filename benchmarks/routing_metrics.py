"""Cost-quality metrics of a two-model router, after RouteLLM (Ong et al., 2024).

A router gives each request a score (higher = send it to the strong, remote model).
Sweeping a threshold over every score value sends the top-scored share c of the
requests remote and keeps the rest local; each threshold is one operating point
(c, p(c)), p = mean answer quality (here 1 if correct, else 0).

  PGR(c)  performance gap recovered = (p(c) - p_local) / (p_remote - p_local):
          0 = no better than always-local, 1 = as good as always-remote (it can
          exceed 1 where the remote model is wrong on some requests the local one gets right)
  APGR    area under PGR(c) over c in [0, 1] (trapezoid over the sweep; the curve
          always runs from (0, 0), nothing remote, to (1, 1), everything remote)
  CPT(x)  call-performance threshold: the smallest remote share c with PGR(c) >= x

Between two operating points the curve is a straight line. That is exact in
expectation, not a drawing convenience: requests with equal scores are sent remote
in random order, so a share between two thresholds is reached by sending a random
part of the next tied group, and both quality and cost move linearly. It is also
why a constant-score router (no information) has the random router's curve, and
why the random router's expected curve is PGR(c) = c: APGR 0.5, CPT(x) = x.

RouteLLM's own evaluation (routellm/evals/evaluate.py) computes APGR the same way
(trapezoid of quality over the strong-model share, normalised by the two models'
gap) and its "x% qual" columns by linear interpolation of the share at quality
p_local + x * (p_remote - p_local), which is CPT(x) on a monotone curve; here CPT
takes the first crossing, so a curve that rises and dips is not flattered.

Pure numpy; no model is loaded. Used by benchmarks/routing_quality.py and tested
by tests/test_routing_metrics.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Curve", "sweep", "pgr", "apgr", "cpt", "value_at", "random_curve", "normalised_ranks"]


@dataclass(frozen=True)
class Curve:
    """A router's operating points, in increasing remote share.

    share[i]    remote share c at the i-th threshold (share[0] = 0, share[-1] = 1)
    quality[i]  mean quality p(c) over all requests at that threshold
    pgr[i]      PGR(c)
    cost[i]     mean remote cost per request (the costs passed to `sweep`; 0 without)
    """

    share: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray
    cost: np.ndarray


def pgr(p: float | np.ndarray, p_local: float, p_remote: float) -> float | np.ndarray:
    """Performance gap recovered; undefined (ValueError) when both models score the same."""
    gap = p_remote - p_local
    if gap == 0:
        raise ValueError("PGR is undefined when the local and the remote model have the same quality")
    return (np.asarray(p, dtype=float) - p_local) / gap if isinstance(p, np.ndarray) else (p - p_local) / gap


def sweep(scores: Sequence[float], q_local: Sequence[float], q_remote: Sequence[float],
          remote_cost: Sequence[float] | None = None) -> Curve:
    """Every threshold of `scores`: send requests scoring >= t remote, for t from above the
    highest score down to the lowest. Tied scores move together (one operating point per
    distinct score). q_local/q_remote: each request's answer quality from either model;
    remote_cost: what sending each request remote costs (added to the mean cost)."""
    s = np.asarray(scores, dtype=float)
    ql, qr = np.asarray(q_local, dtype=float), np.asarray(q_remote, dtype=float)
    rc = np.zeros_like(s) if remote_cost is None else np.asarray(remote_cost, dtype=float)
    n = len(s)
    if n == 0 or not (len(ql) == len(qr) == len(rc) == n):
        raise ValueError("scores, q_local, q_remote (and remote_cost) must be non-empty and of one length")
    if np.isnan(s).any():
        raise ValueError("scores must not be NaN")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    gain = np.cumsum((qr - ql)[order])   # quality gained by sending the top k remote
    spend = np.cumsum(rc[order])
    # Cut only where the score changes: a threshold cannot split a tie.
    cuts = [k for k in range(1, n) if s_sorted[k] != s_sorted[k - 1]] + [n]
    share = np.asarray([0.0] + [k / n for k in cuts])
    p_local, p_remote = float(ql.mean()), float(qr.mean())
    quality = np.asarray([p_local] + [p_local + gain[k - 1] / n for k in cuts])
    cost = np.asarray([0.0] + [spend[k - 1] / n for k in cuts])
    return Curve(share=share, quality=quality, pgr=np.asarray(pgr(quality, p_local, p_remote)), cost=cost)


def random_curve() -> Curve:
    """The random router's expected curve, PGR(c) = c. Its `quality` is in PGR units
    and its `cost` is left at 0 (both are linear in c; the benchmark scales them);
    `sweep` on seeded random scores gives one sample with real qualities and costs."""
    return Curve(share=np.asarray([0.0, 1.0]), quality=np.asarray([0.0, 1.0]), pgr=np.asarray([0.0, 1.0]),
                 cost=np.asarray([0.0, 0.0]))


def _with_endpoints(share: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make sure the curve starts at (0, 0) and ends at (1, 1)."""
    share, y = np.asarray(share, dtype=float), np.asarray(y, dtype=float)
    if share[0] > 0:
        share, y = np.concatenate([[0.0], share]), np.concatenate([[0.0], y])
    if share[-1] < 1:
        share, y = np.concatenate([share, [1.0]]), np.concatenate([y, [1.0]])
    return share, y


def apgr(share: Sequence[float] | np.ndarray, pgr_values: Sequence[float] | np.ndarray) -> float:
    """Area under PGR(c) for c in [0, 1], trapezoid rule over the operating points
    (given in increasing c), with the endpoints (0, 0) and (1, 1) added where missing."""
    c, y = _with_endpoints(np.asarray(share), np.asarray(pgr_values))
    if np.any(np.diff(c) < 0):
        raise ValueError("shares must be in increasing order")
    return float(np.sum((c[1:] - c[:-1]) * (y[1:] + y[:-1]) / 2))


def cpt(share: Sequence[float] | np.ndarray, pgr_values: Sequence[float] | np.ndarray, x: float) -> float | None:
    """The smallest remote share c with PGR(c) >= x on the piecewise-linear curve through
    the operating points (increasing c; endpoints (0, 0) and (1, 1) added where missing).
    None if the curve never reaches x (possible only for x > 1)."""
    c, y = _with_endpoints(np.asarray(share), np.asarray(pgr_values))
    if y[0] >= x:
        return float(c[0])
    for i in range(len(c) - 1):
        if y[i] < x <= y[i + 1]:
            return float(c[i] + (x - y[i]) * (c[i + 1] - c[i]) / (y[i + 1] - y[i]))
    return None


def value_at(share: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, c: float) -> float:
    """A per-point quantity (cost, quality) at remote share c, linear between operating
    points (the expectation when the boundary tie group is split at random)."""
    return float(np.interp(c, np.asarray(share, dtype=float), np.asarray(values, dtype=float)))


def normalised_ranks(scores: Sequence[float]) -> np.ndarray:
    """Ranks scaled to [0, 1] (lowest score 0, highest 1), ties given their average rank.
    Puts scores of different scales (a probability, a negative log-probability) on one."""
    s = np.asarray(scores, dtype=float)
    n = len(s)
    if n == 1:
        return np.asarray([0.5])
    order = np.argsort(s, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=float)
    for value in np.unique(s):  # average the ranks of each tie group
        tied = s == value
        ranks[tied] = ranks[tied].mean()
    return ranks / (n - 1)
