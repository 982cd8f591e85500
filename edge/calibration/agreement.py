"""Would the local answer have done? The rule that turns a pair of answers (the local
model's and the remote tier's, for the same request) into a label.

Written down, in order; the first step that applies decides:

1. Numbers. When the remote answer holds numbers, the local one must hold the remote's
   last number (the answer, usually), compared as numbers ("3.50" is "3.5", "1,000" is
   "1000"). A right number in other words agrees; a wrong one disagrees.
2. Negation. When one answer is negated ("no", "not", "never", "n't", "false",
   "incorrect") and the other is not, they disagree ("The sky is blue" / "is not blue");
   when the remote answer is a bare "no" (or "not ...") and the local one is negated
   too, they agree.
3. Containment. When every word of a short remote answer (at most 6 words, stopwords
   aside) appears in the local answer, they agree: a verbose right answer is right.
4. Meaning. Otherwise the cosine similarity of the two answers' MiniLM embeddings (the
   encoder the router already holds) decides, at `threshold` (0.80); without an
   encoder, the pair is not labelled (None).

Short answers are compared after normalizing case, punctuation and whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Agreement", "agree", "THRESHOLD"]

THRESHOLD = 0.80
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_NEGATIONS = frozenset({"no", "not", "never", "none", "nobody", "nothing", "neither", "nor", "false", "incorrect",
                        "cannot"})
_STOPWORDS = frozenset("a an the is are was were be it its this that of to in on at for and or answer".split())
_SHORT_WORDS = 6


@dataclass(frozen=True)
class Agreement:
    agrees: bool | None    # None: the rule cannot tell (no encoder for a long, number-free pair)
    rule: str              # numbers | negation | containment | meaning | unknown
    similarity: float | None = None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.finditer(text):
        try:
            out.append(float(m.group().replace(",", "")))
        except ValueError:
            continue
    return out


def _negated(words: list[str]) -> bool:
    return any(w in _NEGATIONS or w.endswith("n't") for w in words)


def agree(local: str, remote: str, embed: Callable[[str], np.ndarray] | None = None,
          threshold: float = THRESHOLD) -> Agreement:
    """Does `local` say what `remote` (the teacher) says? See the module docstring."""
    remote_numbers = _numbers(remote)
    if remote_numbers:
        target = remote_numbers[-1]
        return Agreement(any(abs(n - target) <= 1e-9 * max(1.0, abs(target)) for n in _numbers(local)), "numbers")
    lw, rw = _words(local), _words(remote)
    if _negated(lw) != _negated(rw):
        return Agreement(False, "negation")
    key = [w for w in rw if w not in _STOPWORDS and w not in _NEGATIONS]
    if not key and _negated(rw):
        return Agreement(True, "negation")  # "No." and a local answer that says no
    if key and len(key) <= _SHORT_WORDS and set(key) <= set(lw):
        return Agreement(True, "containment")
    if embed is None:
        return Agreement(None, "unknown")
    a, b = embed(local), embed(remote)
    similarity = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
    return Agreement(similarity >= threshold, "meaning", similarity)
