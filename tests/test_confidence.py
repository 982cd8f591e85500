"""Per-token confidence from the local model: the real SmolLM2 GGUF through LlamaBackend."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import numpy as np
import pytest

from edge.backends.base import Chunk, GenerationRequest, Message, SamplingParams
from edge.backends.llama import LlamaBackend
from edge.catalog import default_models_dir, load_manifest
from edge.confidence import MIN_SENTENCE_TOKENS, Confidence, GatePoint, is_confident

# Prompts for the confident-vs-unsure comparison, measured with greedy decoding on
# SmolLM2-135M-Instruct Q4_1 (mean natural-log probability per token, 24 tokens):
#   "Count from 1 to 10."                   -0.21  ("1. 1\n2. 2\n3. 3 ...")
#   "Write a random string of 12 letters."  -1.53  (rambling, no letters)
# The pair first suggested for this test is inverted on this model: "Repeat exactly:
# hello hello hello" gets a refusal ("I'm sorry ... as a chatbot") at -0.72, while a
# 6-digit multiplication scores -0.27, because the model confidently copies the two
# numbers and boilerplate ("To calculate 483917 * 728463, you multiply ...") instead
# of attempting the product. Confidence is about the text produced, not the task.
EASY = "Count from 1 to 10."
HARD = "Write a random string of 12 letters."


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[LlamaBackend, asyncio.AbstractEventLoop]]:
    m = load_manifest()
    path = default_models_dir() / m.get(m.default).file
    if not path.exists():
        pytest.skip(f"default model not installed at {path}")
    b = LlamaBackend("confidence-test", path, n_ctx=1024)
    # One loop for the module: the backend's admission queue lives on the loop that
    # runs its requests (a fresh asyncio.run per request can close the loop before
    # the model thread's slot release lands on it).
    loop = asyncio.new_event_loop()
    loop.run_until_complete(b.start())
    yield b, loop
    loop.run_until_complete(b.close())
    loop.close()


def generate(backend, prompt: str, *, confidence: bool, max_tokens: int = 24,  # type: ignore[no-untyped-def]
             temperature: float = 0.0, seed: int | None = None) -> list[Chunk]:
    b, loop = backend
    request = GenerationRequest(messages=(Message("user", prompt),), confidence=confidence,
                                params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed))

    async def collect() -> list[Chunk]:
        return [c async for c in b.generate(request)]

    return loop.run_until_complete(collect())


def test_confidence_requests_carry_running_logprobs_and_plain_ones_none(backend) -> None:  # type: ignore[no-untyped-def]
    plain = generate(backend, EASY, confidence=False)
    assert plain[-1].finish_reason and plain[-1].completion_tokens > 0
    assert all(c.logprob_mean is None and c.logprob_min is None for c in plain)

    for chunks in (generate(backend, EASY, confidence=True),
                   generate(backend, HARD, confidence=True, temperature=1.0, seed=7)):  # sampled, not greedy
        *body, final = chunks
        assert final.finish_reason and final.completion_tokens > 0
        # Every text chunk carries the values so far (a cascade decides after the first
        # tokens); the running minimum can only fall, and the final chunk has the whole answer's.
        assert body and all(c.logprob_mean is not None and c.logprob_min is not None for c in body)
        mins = [c.logprob_min for c in body] + [final.logprob_min]
        assert all(a >= b for a, b in zip(mins, mins[1:]))
        assert final.logprob_mean is not None and final.logprob_min is not None
        assert final.logprob_min <= final.logprob_mean <= 0.0
        assert math.isfinite(final.logprob_min)

    # Scoring reads logits; it does not change what is generated.
    assert "".join(c.text for c in plain) == "".join(c.text for c in generate(backend, EASY, confidence=True))


class _Spy:
    """Stands in for the backend's scorer: for every token the decode loop scores,
    records the token and the argmax of the logits row the scorer reads at that moment."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.seen: list[tuple[int, int, float, float]] = []

    def logprob(self, token: int) -> float:
        row = self.real.row()
        lp = self.real.logprob(token)
        # The row's largest log-prob, computed independently (float64): greedy picks it.
        row64 = row.astype(np.float64)
        best = -math.log(float(np.exp(row64 - row64.max()).sum()))
        self.seen.append((token, int(row.argmax()), lp, best))
        return lp


def test_greedy_tokens_are_the_argmax_of_the_rows_scored(backend) -> None:  # type: ignore[no-untyped-def]
    """The row read for token i is the one token i was sampled from: reading one position
    late (after the next decode) or from Llama.scores (not filled when logits_all=False)
    gives rows whose argmax is some other token."""
    b, _ = backend
    real = b._scorer
    spy = _Spy(real)
    b._scorer = spy
    try:
        chunks = generate(backend, "Write a very long story about a dragon.", confidence=True, max_tokens=48)
    finally:
        b._scorer = real
    final = chunks[-1]
    mismatched = [(i, tok, top) for i, (tok, top, _, _) in enumerate(spy.seen) if tok != top]
    assert not mismatched, f"(index, sampled token, argmax of the row read): {mismatched}"
    assert len(spy.seen) == final.completion_tokens == 48
    for tok, _, lp, best in spy.seen:
        assert lp == pytest.approx(best, abs=1e-5)
    lps = [lp for _, _, lp, _ in spy.seen]
    assert final.logprob_mean == pytest.approx(sum(lps) / len(lps))
    assert final.logprob_min == min(lps)
    # Not all certain: a real distribution, not a constant.
    assert min(lps) < -0.01


def test_an_easy_answer_scores_a_higher_mean_than_a_hard_one(backend) -> None:  # type: ignore[no-untyped-def]
    easy = generate(backend, EASY, confidence=True)[-1]
    hard = generate(backend, HARD, confidence=True)[-1]
    assert easy.logprob_mean is not None and hard.logprob_mean is not None
    # Measured about -0.2 vs -1.5: a margin far above thread-count/numeric noise.
    assert easy.logprob_mean > hard.logprob_mean + 0.5, (easy, hard)


def test_is_confident() -> None:
    conf = Confidence(mean=-0.2, minimum=-1.5, tokens=24)
    assert is_confident(conf, min_mean=-0.5, min_token=-2.0)
    assert is_confident(conf, min_mean=-0.2, min_token=-1.5)  # bounds are inclusive
    assert not is_confident(conf, min_mean=-0.1, min_token=-2.0)  # mean too low
    assert not is_confident(conf, min_mean=-0.5, min_token=-1.0)  # one token too unlikely
    assert not is_confident(Confidence(mean=0.0, minimum=0.0, tokens=0), min_mean=-1.0, min_token=-5.0)


def decided_at(pieces: list[str], *, holdback: int = 16, first_sentence: bool = True,
               finished_after: int | None = None) -> int | None:
    """The token (1-based) at which the gate reads the confidence, or None if it never does."""
    point = GatePoint(holdback, first_sentence=first_sentence)
    for n, piece in enumerate(pieces, start=1):
        if point.reached(piece, n, finished=n == finished_after):
            return n
    return None


ANSWER_THEN_CHATTER = ["The", " capital", " of", " Peru", " is", " Lima", ".", " It", " is", " a", " city", " of",
                       " many", " old", " streets", " by", " the", " sea", "."]


def test_the_gate_reads_the_first_sentence_when_it_ends_before_the_holdback() -> None:
    assert decided_at(ANSWER_THEN_CHATTER) == 7  # the "." closing "Lima."
    assert decided_at(ANSWER_THEN_CHATTER, first_sentence=False) == 16  # the fixed window
    assert decided_at(ANSWER_THEN_CHATTER, holdback=5) == 5  # the hold-back caps it either way
    assert decided_at(["Yes", "!"] + [" x"] * 20, holdback=64) is None  # nothing ends from token 4 on
    assert decided_at([" a"] * 3, finished_after=3) == 3  # the answer's end decides a short answer


@pytest.mark.parametrize("pieces, at", [
    (["Answer", ":", " 42", "\n", "More"], 4),  # a line break after text ends it
    (["What", " a", " day", "!", " Then"], 4),
    (["Is", " it", " so", "?"], 4),  # "?" at the end of the text so far
    (["Sure", "!", " The", " answer", " is", " Lima", ".", " Then"], 7),  # "Sure!" is too short to judge
    (["Pi", " is", " 3", ".", "14", " or", " so", ".", " Then"], 8),  # a decimal point is not an end
    (["Steps", ":", " 1", ".", " Add", " them", ".", " Then"], 7),  # nor is a list number
    (["\n", "\n", "\n", "\n", "Hi", " there", ".", " Then"], 7),  # leading blank lines are not a sentence
])
def test_what_ends_a_first_sentence(pieces: list[str], at: int) -> None:
    assert MIN_SENTENCE_TOKENS == 4
    assert decided_at(pieces) == at, "".join(pieces)
    assert decided_at(pieces, first_sentence=False) is None  # the fixed window is longer than these


def test_a_slow_reader_of_a_confidence_request_still_sees_every_token_with_its_running_values() -> None:
    # A reader slower than the generator gets merged text on a plain request (fewer
    # writes), but a cascade gate must read the running confidence at an exact token.
    from edge.backends.fake import FakeBackend

    reply = " ".join(f"t{i}" for i in range(200))
    scripted = [-0.5, -1.0, -2.0]  # then -2.0 for every later token

    async def read(confidence: bool) -> list[Chunk]:
        b = FakeBackend(reply=reply, logprob=scripted)
        await b.start()
        try:
            out = []
            request = GenerationRequest(messages=(Message("user", "x"),), confidence=confidence,
                                        params=SamplingParams(max_tokens=200))
            async for chunk in b.generate(request):
                out.append(chunk)
                await asyncio.sleep(0.002)  # the generator runs ahead meanwhile
            return out
        finally:
            await b.close()

    plain = asyncio.run(read(False))
    assert "".join(c.text for c in plain) == " ".join(f"t{i}" for i in range(200))
    assert len(plain) < 201  # merged
    sure = asyncio.run(read(True))
    assert [c.completion_tokens for c in sure[:-1]] == list(range(1, 201)) and sure[-1].finish_reason == "stop"
    for c in sure[:-1]:
        lps = [scripted[min(i, 2)] for i in range(c.completion_tokens)]
        assert c.logprob_mean == pytest.approx(sum(lps) / len(lps)) and c.logprob_min == min(lps)


def test_the_gate_point_says_what_it_judged() -> None:
    def judged(pieces: list[str], finished_after: int | None = None, **kw: object) -> str:
        point = GatePoint(16, **kw)  # type: ignore[arg-type]
        for n, piece in enumerate(pieces, start=1):
            if point.reached(piece, n, finished=n == finished_after):
                return point.judged
        return point.judged

    assert judged(ANSWER_THEN_CHATTER) == "the first sentence"
    assert judged(ANSWER_THEN_CHATTER, first_sentence=False) == "the first 16 tokens"
    assert judged([" a"] * 3, finished_after=3) == "the whole answer"
    assert judged(["Yes", "!"]) == ""  # not reached yet
