"""How sure the local model was of its own answer, from its token log-probabilities.

The numbers are natural-log probabilities, under the model itself, of the tokens it
actually produced: 0 means certain (probability 1), -0.69 a coin flip (1/2), -2.3
one chance in ten. `mean` is their average over the answer's tokens (the log of the
geometric-mean token probability) and `minimum` is the single least likely token,
which catches one shaky guess (a number, a name) inside otherwise fluent text. They
are cheap because they come from the logits row the model already computed to
sample each token: one log-softmax evaluated at one token per step, on the model's
thread, instead of llama-cpp-python's `logprobs=True`, which needs `logits_all=True`
and keeps every position's full vocabulary row. They measure the model's confidence,
not correctness: a small model can be confidently wrong, and text it copies from the
prompt scores high whether or not it answers the question.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Confidence", "is_confident"]


@dataclass(frozen=True)
class Confidence:
    mean: float     # mean natural-log probability per answer token (<= 0)
    minimum: float  # the least likely answer token's natural-log probability (<= mean)
    tokens: int     # how many tokens were scored


def is_confident(conf: Confidence, *, min_mean: float, min_token: float) -> bool:
    """True when the answer's mean log-probability is at least `min_mean` and no
    token fell below `min_token` (both natural logs, <= 0). An answer with no scored
    tokens is not confident."""
    return conf.tokens > 0 and conf.mean >= min_mean and conf.minimum >= min_token
