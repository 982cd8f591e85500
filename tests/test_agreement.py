"""The agreement rule on pairs made for it: each kind of pair, and the rule that decides it."""

from __future__ import annotations

import pytest

from edge.calibration.agreement import agree

PAIRS = [
    # (local, remote teacher, agrees, rule)
    ("The capital of France is Paris.", "Paris", True, "containment"),       # verbose vs terse, right
    ("Paris is lovely, but the capital is Lyon.", "Lyon", True, "containment"),
    ("It is Berlin.", "Paris", False, "meaning"),                             # terse wrong (decided by meaning)
    ("The answer is 42.", "42", True, "numbers"),                             # right number in words
    ("I think it is 41.", "42", False, "numbers"),                            # wrong number
    ("That comes to 3.50 dollars", "3.5", True, "numbers"),
    ("About 1,000 people", "1000", True, "numbers"),
    ("17 * 3 = 51", "The product is 51.", True, "numbers"),                  # the remote's last number
    ("17 * 3 = 41", "The product is 51.", False, "numbers"),
    ("Yes, water boils at sea level at that temperature.", "No.", False, "negation"),
    ("No, it is not.", "No", True, "negation"),
    ("The sky is blue.", "The sky is not blue.", False, "negation"),
    ("Penguins can't fly.", "Penguins cannot fly.", True, "containment"),
]


@pytest.mark.parametrize("local,remote,agrees,rule", PAIRS)
def test_rule_on_made_pairs(local, remote, agrees, rule):
    from edge.catalog import default_models_dir
    from edge.router.classifier import SentenceEncoder

    encoder = SentenceEncoder.from_models_dir(default_models_dir())
    got = agree(local, remote, encoder.embed)
    assert (got.agrees, got.rule) == (agrees, rule), got


def test_without_an_encoder_a_long_unclear_pair_is_not_labelled():
    got = agree("It depends on the season and the light.", "Mostly because of Rayleigh scattering.")
    assert got.agrees is None and got.rule == "unknown"


def test_meaning_decides_long_answers_without_numbers():
    from edge.catalog import default_models_dir
    from edge.router.classifier import SentenceEncoder

    embed = SentenceEncoder.from_models_dir(default_models_dir()).embed
    local = "Leaves change colour in autumn because the green chlorophyll breaks down."
    same = agree(local, "In autumn leaves change colour as the green chlorophyll in them breaks down.", embed)
    other = agree(local, "Volcanoes erupt when pressure from molten rock builds up under the crust.", embed)
    assert (same.rule, same.agrees) == ("meaning", True) and same.similarity >= 0.8
    assert (other.rule, other.agrees) == ("meaning", False) and other.similarity < 0.5
