"""The router metrics of benchmarks/routing_metrics.py (PGR, APGR, CPT) on hand-made curves. No model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from routing_metrics import apgr, cpt, normalised_ranks, pgr, random_curve, sweep, value_at  # noqa: E402

XS = (0.2, 0.5, 0.8, 0.95)


def test_random_router_expected_curve_has_apgr_half_and_cpt_x() -> None:
    r = random_curve()
    assert apgr(r.share, r.pgr) == pytest.approx(0.5)
    for x in XS:
        assert cpt(r.share, r.pgr, x) == pytest.approx(x)
    # The same diagonal sampled at many points.
    c = np.linspace(0, 1, 11)
    assert apgr(c, c) == pytest.approx(0.5)
    assert all(cpt(c, c, x) == pytest.approx(x) for x in XS)


def test_a_constant_score_is_the_random_router() -> None:
    """All scores tied: one threshold sends everything, the curve is the diagonal."""
    ql, qr = [1, 0, 0, 1, 0], [1, 1, 1, 1, 1]
    cur = sweep([0.3] * 5, ql, qr)
    assert list(cur.share) == [0.0, 1.0] and list(cur.pgr) == [0.0, 1.0]
    assert apgr(cur.share, cur.pgr) == pytest.approx(0.5)
    assert cpt(cur.share, cur.pgr, 0.8) == pytest.approx(0.8)


def test_perfect_router_on_a_known_label_vector() -> None:
    # 10 requests, the local model is wrong on 4 (w = 0.4); the remote model is always right.
    q_local = np.asarray([1, 0, 1, 1, 0, 1, 0, 1, 1, 0], dtype=float)
    q_remote = np.ones(10)
    oracle = 1 - q_local
    cur = sweep(oracle, q_local, q_remote)
    assert list(cur.share) == pytest.approx([0.0, 0.4, 1.0])
    assert list(cur.quality) == pytest.approx([0.6, 1.0, 1.0])
    assert list(cur.pgr) == pytest.approx([0.0, 1.0, 1.0])
    # Area: triangle up to c = 0.4, then 1: 0.4 / 2 + 0.6 = 0.8 = 1 - w / 2.
    assert apgr(cur.share, cur.pgr) == pytest.approx(0.8)
    for x in XS:
        assert cpt(cur.share, cur.pgr, x) == pytest.approx(0.4 * x)
    # The reverse ranking (sends the right answers away first) is the worst one.
    worst = sweep(q_local, q_local, q_remote)
    assert apgr(worst.share, worst.pgr) == pytest.approx(0.4 / 2)  # flat at 0 up to c = 0.6, then up
    assert cpt(worst.share, worst.pgr, 0.5) == pytest.approx(0.8)


def test_sweep_orders_by_score_and_counts_costs() -> None:
    scores = [0.9, 0.1, 0.5, 0.7]
    q_local = [0, 1, 1, 0]
    q_remote = [1, 1, 1, 1]
    cost = [4.0, 1.0, 2.0, 3.0]
    cur = sweep(scores, q_local, q_remote, cost)
    assert list(cur.share) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert list(cur.pgr) == pytest.approx([0, 0.5, 1.0, 1.0, 1.0])
    assert list(cur.cost) == pytest.approx([0, 1.0, 7 / 4, 9 / 4, 10 / 4])
    assert cpt(cur.share, cur.pgr, 0.95) == pytest.approx(0.25 + 0.45 * 0.25 / 0.5)
    assert value_at(cur.share, cur.cost, 0.375) == pytest.approx((1.0 + 7 / 4) / 2)


def test_pgr_above_one_and_first_crossing() -> None:
    # The remote model is wrong where the local one was right: PGR can exceed 1, and
    # CPT takes the FIRST share reaching x, not the last.
    share = np.asarray([0.0, 0.25, 0.5, 0.75, 1.0])
    values = np.asarray([0.0, 1.2, 0.6, 0.9, 1.0])
    assert cpt(share, values, 1.0) == pytest.approx(0.25 * 1.0 / 1.2)
    assert cpt(share, values, 1.1) == pytest.approx(0.25 * 1.1 / 1.2)
    assert cpt(share, values, 1.5) is None
    assert pgr(0.75, 0.5, 1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pgr(0.5, 0.7, 0.7)


def test_endpoints_are_added_where_missing() -> None:
    # Points strictly inside (0, 1): the curve still runs from (0, 0) to (1, 1).
    assert apgr([0.5], [1.0]) == pytest.approx(0.5 * 1.0 / 2 + 0.5 * 1.0)
    assert cpt([0.5], [1.0], 0.5) == pytest.approx(0.25)


def test_normalised_ranks_average_ties() -> None:
    r = normalised_ranks([0.2, 0.9, 0.2, 0.5])
    assert list(r) == pytest.approx([1 / 6, 1.0, 1 / 6, 2 / 3])
