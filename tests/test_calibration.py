"""The router fitted to a deployment's own labels: it learns traffic its prior gets wrong,
toward a quality or a spend target, and every answer says which fit decided."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edge.calibration.fit import fit
from edge.calibration.store import CalibrationStore, Label
from edge.router.load import FixedLoad
from edge.types import Tier

from .conftest import Core, core_settings, fake_config, remote_entries
from .test_core import providers

DIM = 384
RNG = np.random.default_rng(3)
HARD, EASY = RNG.standard_normal(DIM), RNG.standard_normal(DIM)  # two families of prompts


def near(center: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = center + 0.3 * rng.standard_normal(DIM)
    return v / np.linalg.norm(v)


def labels(n: int, seed: int = 1) -> list[Label]:
    """Half from the 'hard' family (the local answer would not do), half 'easy'; the
    shipped prior scores them backwards, as it did on traffic it was not built on."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hard = i % 2 == 0
        out.append(Label(source="shadow", agrees=not hard, rule="numbers", difficulty=0.2 if hard else 0.8,
                         embedding=near(HARD if hard else EASY, rng)))
    return out


def test_below_min_labels_the_prior_stays():
    assert fit(labels(20), min_labels=50) is None


def test_the_fit_learns_what_the_prior_ranks_backwards():
    result = fit(labels(200), target="quality", value=0.95)
    assert result is not None and result.head is None  # these labels carry no confidence reading
    calibrator, point = result.calibrator, result.point
    rng = np.random.default_rng(9)
    hard = [calibrator.score(near(HARD, rng), prior=0.2) for _ in range(50)]
    easy = [calibrator.score(near(EASY, rng), prior=0.8) for _ in range(50)]
    # The cheapest point that meets 0.95 agreement: easy prompts all stay local, and nearly
    # every hard one goes remote (a few may stay: 5% disagreement is what the target allows).
    assert max(easy) < point.threshold and np.mean(np.array(hard) >= point.threshold) >= 0.8
    assert point.estimated_agreement >= 0.95 and 0.4 <= point.remote_share <= 0.5
    assert "fit on 200 labels" in point.describe()


def test_a_spend_target_sets_the_remote_share():
    result = fit(labels(200), target="spend", value=0.3)
    assert result is not None
    point = result.point
    assert 0.25 <= point.remote_share <= 0.35


class FamilyEncoder:
    """Embeds a prompt by its family word, as MiniLM embeds similar prompts nearby."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(5)

    def embed_with_count(self, text: str):  # type: ignore[no-untyped-def]
        return near(HARD if "prove" in text else EASY, self.rng), len(text.split())

    def embed(self, text: str) -> np.ndarray:
        return self.embed_with_count(text)[0]


class BackwardsClassifier:
    """The shipped prior, wrong on this traffic: hard prompts look easy and easy ones hard."""

    def __init__(self) -> None:
        self.encoder = FamilyEncoder()

    def score_embedding(self, text: str, vector, tokens) -> float:  # type: ignore[no-untyped-def]
        return 0.2 if "prove" in text else 0.8

    def score(self, messages) -> float:  # type: ignore[no-untyped-def]
        return self.score_embedding(messages[-1][1], None, 0)


def test_a_daemon_with_enough_labels_routes_by_its_fit_and_says_so(tmp_path):
    store = CalibrationStore(tmp_path / "ledger.calibration.sqlite3")
    for label in labels(120):
        store.add(label)
    store.close()
    toml = (fake_config(reply="local") + '[routing]\nstrategy = "smart"\ncascade = false\n'
            + remote_entries(("cloud", "cloud", "openai")))

    async def scenario() -> None:
        async with Core(core_settings(tmp_path, toml), providers(("cloud", "openai"), reply=lambda b: "remote"),
                        load=FixedLoad(), classifier=BackwardsClassifier()) as core:
            hard, _ = await core.ask("Please prove that the sum of two odd numbers is even.")
            easy, _ = await core.ask("What colour is the sky?")
            snap = await asyncio.to_thread(core.engine.snapshot)
            from edge.server import _router

            status = _router(snap)  # what GetStatus (and `edge status`) carries
            assert status.labels == 120 and status.fitted and status.target == "quality 0.95"
            assert 0 < status.threshold <= 1 and status.estimated_agreement >= 0.95
        assert hard.tier == Tier.CLOUD and easy.tier == Tier.LOCAL  # the prior alone would do the opposite
        detail = next(r.detail for r in hard.trace if r.code == "DIFFICULTY_HIGH")
        assert "fit on 120 labels" in detail and "quality 0.95" in detail

    asyncio.run(scenario())


def test_router_commands_import_show_export_and_reset(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "EDGE_LEDGER": str(tmp_path / "ledger.sqlite3")}

    def edge(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "edge", "router", *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    examples = tmp_path / "examples.jsonl"
    lines = [{"prompt": f"Prove that {n} plus {n + 2} is even when {n} is odd.", "acceptable": False} for n in range(30)]
    lines += [{"prompt": f"What colour is a {c} apple?", "acceptable": True} for c in ["red", "green", "yellow"] * 10]
    examples.write_text("\n".join(json.dumps(x) for x in lines))
    assert "imported 60 labels" in edge("import", str(examples)).stdout
    status = edge("status").stdout
    assert "labels: 60 (import 60)" in status and "fit on 60 labels" in status and "remote share" in status
    exported = [json.loads(x) for x in edge("export").stdout.splitlines()]
    assert len(exported) == 60 and len(exported[0]["embedding"]) == 384
    assert not any("prompt" in x or "Prove" in json.dumps(x) for x in exported)  # no text leaves
    assert exported[0]["conf_mean"] is None  # imported prompts carry no answer, so no reading
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**exported[0], "conf_mean": 0.5}))
    r = subprocess.run([sys.executable, "-m", "edge", "router", "import", str(bad)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 1 and "line 1: 'conf_mean' and 'conf_min' are log-probabilities" in r.stderr
    assert "labels removed" in edge("reset").stdout
    assert "no labels yet" in edge("status").stdout
    store = CalibrationStore(tmp_path / "ledger.calibration.sqlite3")  # the store exists, but is empty
    store.close()
    status = edge("status").stdout
    assert "no labels yet" in status and "()" not in status


CONFIDENT, DOUBTFUL = (-0.2, -0.6), (-2.0, -6.0)  # (mean, lowest token) log-probabilities at the gate


def gated_labels(n: int, *, informative: bool = True, seed: int = 2) -> list[Label]:
    """One family of look-alike prompts, the local answer right about half the time: the
    prompt cannot tell which, the answer's confidence can (when `informative`)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        agrees = i % 2 == 0
        reading = (CONFIDENT if agrees else DOUBTFUL) if informative else (CONFIDENT, DOUBTFUL)[int(rng.integers(2))]
        out.append(Label(source="shadow", agrees=agrees, rule="containment", difficulty=0.8,
                         conf_mean=reading[0] + 0.1 * rng.standard_normal(),
                         conf_min=reading[1] + 0.3 * rng.standard_normal(), embedding=near(EASY, rng)))
    return out


def test_the_fit_reads_the_answers_confidence_where_it_tells_right_from_wrong():
    result = fit(gated_labels(120), target="quality", value=0.95)
    assert result is not None and result.head is not None and result.point.reads_confidence
    score = result.calibrator.score(near(EASY, np.random.default_rng(4)), prior=0.8)
    assert 0.3 < score < 0.7  # the neighbours alone cannot tell: half of them were wrong
    t = result.point.threshold
    assert result.head.p(score, *CONFIDENT) < t <= result.head.p(score, *DOUBTFUL)
    # With the answer read, the labels' agreement meets the target with about half sent remote;
    # on the neighbours' score alone, meeting it means sending nearly everything.
    assert result.point.estimated_agreement >= 0.95 and result.point.remote_share <= 0.6
    assert result.before.remote_share >= 0.9
    assert "with the answer's confidence" in result.point.describe()


def test_confidence_that_tells_nothing_is_left_out():
    result = fit(gated_labels(120, informative=False), target="quality", value=0.95)
    assert result is not None and result.head is None and not result.point.reads_confidence


def test_a_spend_target_holds_its_share_before_the_answer():
    result = fit(gated_labels(120), target="spend", value=0.3)
    assert result is not None and result.head is None


def test_the_daemon_gates_by_its_fit_keeping_confident_answers_and_escalating_doubtful_ones(tmp_path):
    store = CalibrationStore(tmp_path / "ledger.calibration.sqlite3")
    for label in gated_labels(120):
        store.add(label)
    store.close()

    async def ask(reading: tuple[float, float]):  # type: ignore[no-untyped-def]
        rest = (4 * reading[0] - reading[1]) / 3  # four tokens, the lowest first: their mean is reading[0]
        toml = (fake_config(reply="It is blue today.", extra=f"fake_logprob = [{reading[1]}, {rest}]\n",
                            shadow_rate=1.0)
                + '[routing]\nstrategy = "smart"\ncascade = true\n' + remote_entries(("cloud", "cloud", "openai")))
        async with Core(core_settings(tmp_path, toml), providers(("cloud", "openai"), reply=lambda b: "remote"),
                        load=FixedLoad(), classifier=BackwardsClassifier()) as core:
            result, _ = await core.ask("What colour is the sky?")
            await core.engine.close_shadows(wait=True)
            return result

    confident = asyncio.run(ask(CONFIDENT))
    # Its shadow's label keeps the gate's reading, and the classifier's own score as the
    # next fit's prior (not the fit's score, which would feed the fit back into itself).
    store = CalibrationStore(tmp_path / "ledger.calibration.sqlite3")
    try:
        new = [x for x in store.labels() if x.source == "shadow" and x.rule != "containment"]
    finally:
        store.close()
    assert len(new) == 1 and new[0].difficulty == 0.8
    assert (new[0].conf_mean, new[0].conf_min) == (pytest.approx(CONFIDENT[0]), pytest.approx(CONFIDENT[1]))
    doubtful = asyncio.run(ask(DOUBTFUL))
    assert confident.tier == Tier.LOCAL and doubtful.tier == Tier.CLOUD
    kept = next(r.detail for r in confident.trace if r.code == "CASCADE_CONFIDENT")
    assert "P(the local answer would not do)" in kept and "fit on 120 labels, with the answer's confidence" in kept
    assert any(a.outcome == "low_confidence" and "P(the local answer would not do)" in a.detail
               for a in doubtful.attempts)
