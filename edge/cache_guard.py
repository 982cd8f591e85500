"""May a cached question's answer serve a new question? The meaning guard of semantic hits.

Embeddings place "turn on dark mode" and "turn off dark mode" (0.95 cosine), "convert 100
Fahrenheit to Celsius" and its reverse (0.99), "is 7 greater than 3" and "is 3 greater than
7" (0.98) next to each other: a semantic cache would serve the one's answer to the other,
and a higher threshold cannot separate them without losing real paraphrases. This module
compares the two questions' words instead and names the first meaning change it finds:

  negation   the count of negation words differs: not, no, never, without, none, nothing,
             nobody, neither, nor, nowhere, cannot and every "n't" ("Is it safe to X?" vs
             "Is it not safe to X?"; "with eggs" vs "without eggs").
  antonym    one side has more of a word and the other more of its opposite, from a written
             table of pairs (on/off, enable/disable, increase/decrease, before/after,
             max/min, above/below, open/close, add/remove, buy/sell, in/out, start/stop,
             upload/download, first/last, ...; with simple inflections), or one side's word
             is the other's with a negating prefix (lock/unlock, connect/disconnect,
             possible/impossible).
  numbers    the numbers differ as multisets: digits ("17", "0.5", "5:30", "3/4", "1,000")
             and number words ("two", "twenty-five", "a hundred"; a pronoun "one" as in
             "which one" is not a number).
  order      content words swap sides of a directional word both questions use: to (into,
             onto, towards), from, than, by, per, and "in" after a quantity ("100 dollars in
             euros"; "cold in Oslo" has no direction). For each occurrence, the three nearest
             content words either side (stopping at punctuation or another directional
             word) form ordered pairs (a before, b after); a pair that one question has and
             the other has reversed is a swap ("from Paris to London" vs "from London to
             Paris"). Symmetric words (and, or, vs, between) are deliberately not
             directional: "Python vs Java" asks what "Java vs Python" asks.
             Without a directional word: the same content words, in the same places but
             for two that trade places around at least one that stays ("Is 7 a multiple
             of 91?" vs "Is 91 a multiple of 7?", "15 minus 45", "Did Spain beat England").
             Neighbours trading places ("Python vs Java") and moved clauses ("In Japan,
             what is the population?") are not such exchanges.

None means no change was found and the cached answer may serve. The check is
deterministic, needs no model and takes tens of microseconds. It errs towards refusing: a
refused paraphrase costs one generation, a wrong answer costs trust.

What it misses (benchmarks/cache_guard.py measures it on pairs it was not tuned on):
opposites missing from the table (tighten/loosen, freeze/thaw), neighbouring words that
trade places ("What percentage of 250 is 40?" vs "... of 40 is 250?"), operands of more
than one word ("inflation" and "interest rates"). What it refuses needlessly: a
negation that does not negate ("..., or not?"), commutative swaps ("17 times 23" vs "23
times 17").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["REASONS", "meaning_change"]

REASONS = ("negation", "antonym", "numbers", "order")

_NEGATIONS = frozenset("not no never without none nothing nobody neither nor nowhere cannot".split())
# Negated auxiliaries typed without the apostrophe.
_BARE_NT = frozenset("dont doesnt didnt isnt arent wasnt werent cant wont couldnt shouldnt wouldnt havent hasnt "
                     "hadnt aint mustnt neednt".split())

# Opposites, separated by ";"; "a|b" lists irregular forms of one side. Inflections
# (-s, -es, -ed, -d, -ing) are added below.
_ANTONYMS = """
on off; enable disable; activate deactivate; increase decrease; increase reduce; raise lower;
up down; in out; before after; above below; over under; inside outside; max min; maximum minimum;
maximize minimize; maximise minimise; open close; open shut; add remove; add delete; add subtract; create delete;
buy|bought sell|sold; lend|lent borrow; send|sent receive; deposit withdraw|withdrew; credit debit;
import export; input output; upload download; push pull; encrypt decrypt; encode decode; compress decompress;
expand collapse; attach detach; include exclude; accept reject; accept decline; allow deny; allow block; approve reject;
show|shown hide|hid|hidden; start stop; start finish; begin|began|begun end; pause resume; join leave|left;
enter exit; arrive depart; arrival departure; win|won lose|lost; gain lose|lost; profit loss; rise|rose|risen fall|fell;
pass fail; success failure; true false; positive negative; plus minus; multiply divide; more less; more fewer;
most least; better worse; best worst; high low; higher lower; highest lowest; hot cold; warm cool; warmer colder;
heat cool; heating cooling; big small; bigger smaller; biggest smallest; large small; larger smaller;
largest smallest; long short; longer shorter; longest shortest; fast slow; faster slower; fastest slowest;
old new; old young; older younger; oldest youngest; early late; earlier later; earliest latest; first last;
top bottom; left right; north south; east west; northern southern; eastern western; upper lower;
uppercase lowercase; ascending descending; ascend descend; forward backward; forwards backwards;
cheap expensive; cheapest dearest; strong weak; stronger weaker; easy hard; easy difficult; easier harder;
safe dangerous; wet dry; full empty; thick thin; wide narrow; deep shallow; light dark; lighter darker;
heavy light; heavier lighter; heaviest lightest;
love hate; always never; everything nothing; all none; everyone nobody; inhale exhale; internal external;
horizontal vertical; odd even; day night; morning evening; summer winter; spring autumn; sunrise sunset;
male female; man|men woman|women; boy girl; husband wife; mother father; son daughter; brother sister;
asleep awake; alive dead; pro con; advantage disadvantage; benefit drawback; plural singular
"""

_PREFIXES = ("un", "dis", "in", "im", "il", "ir", "non", "de")

_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_NUMBER_WORDS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(),
                                                      start=2)})
_NUMBER_WORDS["dozen"] = 12
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
# "one" after these is a pronoun ("which one", "the one"), not a quantity.
_ONE_PRONOUN = frozenset("which the this that each every no any some another other".split())

_DIRECTIONAL = {"to": "to", "into": "to", "onto": "to", "toward": "to", "towards": "to", "from": "from",
                "than": "than", "by": "by", "per": "per"}
_WINDOW = 3  # content words either side of a directional word

_STOPWORDS = frozenset("""
a an the is are was were be been being am do does did done doing have has had having i me my mine we us our you
your it its he him his she her they them their this that these those there here what which who whom whose when
where why how whats hows can could will would shall should may might must of in on at for with about as if
then so and or but also just please very really some any much many more most quite too there's it's what's i'm
i've i'd you're get got go going want need like tell know way show give let make help thanks thank hi hello
vs versus between
""".split()) - _NEGATIONS  # the symmetric vs, versus, between: "A vs B" asks what "B vs A" asks

_TOKEN = re.compile(r"(?<![\w.])-?\d+(?:[.,:/^]\d+)*|[a-z]+(?:'[a-z]+)*|[.,;:!?()\"]")
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+$")


def _inflections(word: str) -> set[str]:
    if len(word) < 3:
        return {word}  # on, in, up: no "ons", "ins"
    stem = word[:-1] if word.endswith("e") else word
    forms = {word, word + "s", word + "es", word + "d", word + "ed", stem + "ing", stem + "ed"}
    if len(word) <= 4 and word[-1] not in "aeiouwxy" and word[-2:-1] in set("aeiou"):
        forms |= {word + word[-1] + "ed", word + word[-1] + "ing"}  # stop -> stopped, stopping
    return forms


def _antonym_table() -> dict[str, list[tuple[int, int]]]:
    """word form -> [(pair index, side 0 or 1)]."""
    table: dict[str, list[tuple[int, int]]] = {}
    for index, line in enumerate(p.split() for p in _ANTONYMS.replace("\n", " ").split(";") if p.strip()):
        for side, spelled in enumerate(line):
            base, *irregular = spelled.split("|")
            for form in _inflections(base) | set(irregular):
                table.setdefault(form, []).append((index, side))
    return table


_ANTONYM_FORMS = _antonym_table()


@dataclass(frozen=True)
class _Reading:
    negations: int
    antonyms: Counter[tuple[int, int]]
    numbers: Counter[str]
    words: frozenset[str]
    content: tuple[str, ...]                          # content words in order, stemmed
    directed: dict[str, frozenset[tuple[str, str]]]   # directional word -> (before, after) content pairs


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\bcan't\b|\bcannot\b", "can not", text)
    text = re.sub(r"\bwon't\b", "will not", text)
    text = re.sub(r"n't\b", " not", text)
    out = []
    for tok in _TOKEN.findall(text):
        out.extend(("do", "not") if tok in _BARE_NT else (tok,))
    return out


def _number(tok: str) -> str:
    """A digit token's value as text: "1,000" and "1000.0" alike; times and fractions as written."""
    if _THOUSANDS.match(tok):
        tok = tok.replace(",", "")
    return repr(float(tok)) if re.fullmatch(r"-?\d+(\.\d+)?", tok) else tok  # "05", "5.0" and "5" alike


def _spelled(run: list[str]) -> str:
    """The value of a run of number words: "twenty five" 25, "one hundred and five" 105."""
    total, current = 0, 0
    for w in run:
        if w in _SCALES:
            current = max(current, 1) * _SCALES[w]
            if _SCALES[w] > 100:
                total, current = total + current, 0
        else:
            current += _NUMBER_WORDS[w]
    return _number(str(total + current))


def _number_word(tokens: list[str], i: int, in_run: bool) -> bool:
    """Is tokens[i] part of a spelled number? ("and" inside one: "one hundred and five")."""
    tok, nxt = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
    if tok == "and":
        return in_run and (nxt in _NUMBER_WORDS or nxt in _SCALES)
    if tok == "one" and not in_run and ((i and tokens[i - 1] in _ONE_PRONOUN) or nxt in ("of", "another")):
        return False  # "which one", "one of": a pronoun
    return tok in _NUMBER_WORDS or tok in _SCALES


def _numbers(tokens: list[str]) -> Counter[str]:
    """Digit tokens and runs of number words, as values."""
    found: Counter[str] = Counter()
    run: list[str] = []
    for i, tok in enumerate(tokens):
        if _number_word(tokens, i, bool(run)):
            if tok != "and":
                run.append(tok)
            continue
        if run:
            found[_spelled(run)] += 1
            run.clear()
        if tok[0].isdigit() or (tok[0] == "-" and len(tok) > 1):
            found[_number(tok)] += 1
    if run:
        found[_spelled(run)] += 1
    return found


def _is_content(tok: str) -> bool:
    return (tok[0].isalnum() or tok[0] == "-") and tok not in _STOPWORDS and tok not in _NEGATIONS \
        and tok not in _DIRECTIONAL


def _stem(word: str) -> str:
    if word.endswith("'s"):
        word = word[:-2]
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _directed(tokens: list[str]) -> dict[str, frozenset[tuple[str, str]]]:
    """For each directional word: (content word before it, content word after it) pairs,
    the nearest `_WINDOW` on each side within its segment."""
    def content(i: int, step: int) -> list[str]:
        out: list[str] = []
        while 0 <= i < len(tokens) and len(out) < _WINDOW:
            tok = tokens[i]
            if tok in _DIRECTIONAL or not (tok[0].isalnum() or tok[0] == "-"):
                break  # punctuation or another directional word ends the segment
            if _is_content(tok):
                out.append(_stem(tok))
            i += step
        return out

    pairs: dict[str, set[tuple[str, str]]] = {}
    for i, tok in enumerate(tokens):
        before = content(i - 1, -1) if tok in _DIRECTIONAL or tok == "in" else []
        if tok == "in" and not any(w[0].isdigit() or w in _NUMBER_WORDS for w in before):
            continue  # "in" is directional after a quantity only: "100 dollars in euros", not "cold in Oslo"
        if before:
            found = pairs.setdefault(_DIRECTIONAL.get(tok, tok), set())
            found.update((a, b) for a in before for b in content(i + 1, 1) if a != b)
    return {d: frozenset(p) for d, p in pairs.items()}


# One lookup reads the new prompt against up to 8 candidates: remember a few readings,
# not every prompt ever seen (they can be long).
@lru_cache(maxsize=64)
def _read(text: str) -> _Reading:
    tokens = _tokens(text)
    antonyms: Counter[tuple[int, int]] = Counter()
    for tok in tokens:
        for entry in _ANTONYM_FORMS.get(tok, ()):
            antonyms[entry] += 1
    return _Reading(negations=sum(t in _NEGATIONS for t in tokens), antonyms=antonyms, numbers=_numbers(tokens),
                    words=frozenset(tokens), content=tuple(_stem(t) for t in tokens if _is_content(t)),
                    directed=_directed(tokens))


def _antonym_swap(a: _Reading, b: _Reading) -> bool:
    for index in {i for i, _ in a.antonyms} | {i for i, _ in b.antonyms}:
        d0 = a.antonyms[(index, 0)] - b.antonyms[(index, 0)]
        d1 = a.antonyms[(index, 1)] - b.antonyms[(index, 1)]
        if d0 * d1 < 0:  # one side gained a word and lost its opposite
            return True
    only_a, only_b = a.words - b.words, b.words - a.words
    return any(len(w) >= 4 and p + w in other for one, other in ((only_a, only_b), (only_b, only_a))
               for w in one for p in _PREFIXES)


def _exchanged(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """b is a with two words, not neighbours, trading places."""
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return len(diff) == 2 and diff[1] - diff[0] >= 2 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _order_swap(a: _Reading, b: _Reading) -> bool:
    if _exchanged(a.content, b.content):
        return True
    for word in a.directed.keys() & b.directed.keys():
        pa, pb = a.directed[word], b.directed[word]
        one_way_a = {p for p in pa if p[::-1] not in pa}
        one_way_b = {p for p in pb if p[::-1] not in pb}
        if any(p[::-1] in one_way_b for p in one_way_a):
            return True
    return False


def meaning_change(cached: str, new: str) -> str | None:
    """The first meaning change found between a cached question and a new one (one of
    REASONS), or None when none is found and the cached answer may serve the new question."""
    a, b = _read(cached), _read(new)
    if a.negations != b.negations:
        return "negation"
    if _antonym_swap(a, b):
        return "antonym"
    if a.numbers != b.numbers:
        return "numbers"
    if _order_swap(a, b):
        return "order"
    return None
