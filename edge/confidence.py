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

import re
from dataclasses import dataclass

__all__ = ["Confidence", "GatePoint", "is_confident", "MIN_SENTENCE_TOKENS"]

# A first "sentence" shorter than this carries no answer to judge ("Sure!", "Hi.");
# the gate reads on to the next sentence end instead.
MIN_SENTENCE_TOKENS = 4
# A sentence ends at . ! or ? followed by whitespace or the end of the text so far, or
# at a line break after some text. A terminator right after a digit does not count:
# "3.14", "1. First item" and "costs 5." read on (the answer's end or the token cap
# still close the window).
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?:\s|$)|(?<=\S)[ \t]*\n")


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


class GatePoint:
    """When the cascade judges a streaming local answer: at the end of its first
    sentence, after `holdback` tokens, or at the end of the answer, whichever comes
    first.

    Why the first sentence: an answer is usually stated first ("The capital of Peru
    is Lima.") and what follows is elaboration, whose many equally good wordings score
    low whatever the answer's correctness. Averaging over that tail blurs the signal;
    on the router's training families (models/router/) stopping at the first sentence
    ranked wrong answers at least as well everywhere and better on open writing. It
    also ends the hold-back sooner, so a confident short answer starts streaming
    earlier. `first_sentence=False` keeps the fixed window of `holdback` tokens.

    Feed it every chunk's text and running token count; it answers True once, at the
    point where the gate should read the running confidence."""

    def __init__(self, holdback: int, *, first_sentence: bool = True) -> None:
        self.holdback = holdback
        self.first_sentence = first_sentence
        self._text = ""
        self._from = 0  # where text from the MIN_SENTENCE_TOKENS-th token on starts
        self.judged = ""  # once reached: what the gate reads ("the first sentence", ...), for traces

    def reached(self, text: str, tokens: int, *, finished: bool) -> bool:
        if tokens < MIN_SENTENCE_TOKENS:
            self._from = len(self._text) + len(text)
        self._text += text
        # Only a terminator in the 4th token or later ends the window ("Sure! ..." reads on);
        # the look-behind still sees the text before it.
        if self.first_sentence and _SENTENCE_END.search(self._text, self._from) is not None:
            self.judged = "the first sentence"
        elif finished:
            self.judged = "the whole answer"
        elif tokens >= self.holdback:
            self.judged = f"the first {self.holdback} tokens"
        return bool(self.judged)
