"""A generated suite of chat tasks whose answers can be checked by a program.

It is the training data of the router's difficulty classifier: each task is put
to the local model (label.py) and labelled by its checker, and the classifier
learns, from the prompt alone, how likely the local model is to get it wrong.

Families, each with graded `level`s, from trivial to hard for a 135M model:

  arithmetic  add1 (single-digit +), add2 (two-digit +), sub2 (two-digit -),
              mul1 (single-digit x), mul2 (two-digit x two-digit), mul3 (three-digit x two-digit)
  word        multi-step word problems: step1, step2, step3 (the last with a multiplication)
  factual     capital (countries, famous to obscure), symbol (chemical elements), misc (general knowledge)
  strings     upper (uppercase a word), length (letters in a word), count (one letter's
              occurrences), reverse (reverse a word)
  code        "what does this Python expression evaluate to": arith, len, index, slice, method, builtin
  writing     poem, email, story, description (open writing; see the proxy below)

Checkers (all case-insensitive unless said otherwise):
  * numeric answers: the first number in the answer that is NOT one of the prompt's own
    numbers must equal the expected value (a model that restates "3 + 4 = 7" is right,
    "The answer is 8. 3 + 4 = 7" is wrong). Digits with thousands commas and the number
    words zero..twenty count. Generators make sure the expected value is not a number in
    the prompt, and never negative.
  * names (capitals, symbols, facts): among every candidate the family knows (all
    capitals, all symbols...), the first one mentioned must be the expected one.
  * strings: upper needs the exact uppercase word (case-sensitive); reverse needs the
    reversed word as a whole word.
  * code: ints as numbers; strings/lists by their value (quotes and spaces ignored).
  * open writing, a proxy for "did what was asked": the answer mentions the requested
    subject (its keyword) AND has at least WRITING_MIN_WORDS words. It cannot judge
    quality; it catches refusals, off-topic answers and one-liners.

Deterministic: `build_tasks(seed)` returns the same tasks for the same seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Task", "build_tasks", "FAMILIES", "WRITING_MIN_WORDS", "DEFAULT_SEED"]

DEFAULT_SEED = 20250101
PER_FAMILY = 60
WRITING_MIN_WORDS = 20
FAMILIES = ("arithmetic", "word", "factual", "strings", "code", "writing")


@dataclass(frozen=True)
class Task:
    id: str                       # "<family>-<level>-<nnn>", stable for a seed
    family: str
    level: str                    # the graded kind within the family
    prompt: str                   # the user message, as the local model sees it
    expected: str                 # the reference answer (or, for writing, the proxy's rule)
    checker: Callable[[str], bool]

    def check(self, answer: str) -> bool:
        return self.checker(answer)


# -- checking helpers --------------------------------------------------------------------

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_NUM_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|\b(?:" + "|".join(_WORDS) + r")\b", re.IGNORECASE)


def numbers_in(text: str) -> list[float]:
    """Every number in `text`, in order: digits (thousands commas allowed) and the words zero..twenty.
    No signs: "3-2" is 3 and 2 (the suite never expects a negative)."""
    out: list[float] = []
    for m in _NUM_RE.finditer(text):
        tok = m.group(0).lower()
        if tok in _WORDS:
            out.append(float(_WORDS.index(tok)))
            continue
        tok = tok.rstrip(",").replace(",", "")
        try:
            out.append(float(tok))
        except ValueError:
            continue
    return out


def numeric_checker(prompt: str, expected: float) -> Callable[[str], bool]:
    given = set(numbers_in(prompt))
    assert expected not in given, (prompt, expected)  # the generator's promise (see module docstring)

    def check(answer: str) -> bool:
        fresh = [n for n in numbers_in(answer) if n not in given]
        return bool(fresh) and fresh[0] == expected
    return check


def first_of_checker(expected: str, candidates: list[str]) -> Callable[[str], bool]:
    """The first candidate mentioned (as whole words) must be `expected`."""
    pats = {c: re.compile(r"(?<!\w)" + re.escape(c) + r"(?!\w)", re.IGNORECASE) for c in set(candidates) | {expected}}

    def check(answer: str) -> bool:
        hits = [(m.start(), c) for c, p in pats.items() if (m := p.search(answer))]
        if not hits:
            return False
        # Earliest mention wins; at the same position the longer name ("Niger" vs "Nigeria").
        hits.sort(key=lambda h: (h[0], -len(h[1])))
        return hits[0][1] == expected
    return check


def _norm(s: str) -> str:
    return re.sub(r"[\s'\"`]", "", s).lower()


# -- families ----------------------------------------------------------------------------

def _arithmetic(rng: random.Random) -> list[tuple[str, str, str, Callable[[str], bool]]]:
    out = []
    phrasings = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}. Answer with a number.",
                 "{a} {op} {b} = ?"]
    levels = [("add1", lambda: (rng.randint(1, 9), rng.randint(1, 9)), "+"),
              ("add2", lambda: (rng.randint(10, 99), rng.randint(10, 99)), "+"),
              ("sub2", lambda: (rng.randint(50, 99), rng.randint(10, 49)), "-"),
              ("mul1", lambda: (rng.randint(2, 9), rng.randint(2, 9)), "*"),
              ("mul2", lambda: (rng.randint(11, 99), rng.randint(11, 99)), "*"),
              ("mul3", lambda: (rng.randint(101, 999), rng.randint(11, 99)), "*")]
    for level, draw, op in levels:
        made = 0
        while made < PER_FAMILY // len(levels):
            a, b = draw()
            value = a + b if op == "+" else a - b if op == "-" else a * b
            if value in (a, b):
                continue
            prompt = rng.choice(phrasings).format(a=a, b=b, op=op)
            out.append((level, prompt, str(value), numeric_checker(prompt, value)))
            made += 1
    return out


_NAMES = ["Sam", "Maria", "Ken", "Aisha", "Leo", "Priya", "Tom", "Yuki", "Omar", "Nina"]
_ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "coins"]


def _word(rng: random.Random) -> list[tuple[str, str, str, Callable[[str], bool]]]:
    out: list[tuple[str, str, str, Callable[[str], bool]]] = []
    while len(out) < PER_FAMILY:
        level = ("step1", "step2", "step3")[len(out) * 3 // PER_FAMILY]
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a = rng.randint(3, 20)
        if level == "step1":
            b = rng.randint(2, 15)
            value = a + b
            prompt = f"{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?"
        elif level == "step2":
            b, c = rng.randint(2, 15), rng.randint(1, 10)
            value = a + b - c
            prompt = (f"{name} has {a} {item}, buys {b} more, and then gives {c} to a friend. "
                      f"How many {item} does {name} have left?")
        else:
            b, c = rng.randint(2, 6), rng.randint(1, 9)
            value = a * b - c
            prompt = (f"{name} buys {b} boxes with {a} {item} in each box, then loses {c} of them. "
                      f"How many {item} does {name} have?")
        if value <= 0 or value in numbers_in(prompt):
            continue
        out.append((level, prompt, str(value), numeric_checker(prompt, value)))
    return out


# Famous first, obscure last; the generator samples across the whole list.
_CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
    ("the United Kingdom", "London"), ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"),
    ("Greece", "Athens"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasilia"),
    ("Turkey", "Ankara"), ("Switzerland", "Bern"), ("Portugal", "Lisbon"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Poland", "Warsaw"), ("Kenya", "Nairobi"), ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Nigeria", "Abuja"),
    ("Pakistan", "Islamabad"), ("New Zealand", "Wellington"), ("Morocco", "Rabat"), ("Kazakhstan", "Astana"),
    ("Mongolia", "Ulaanbaatar"), ("Burkina Faso", "Ouagadougou"), ("Bhutan", "Thimphu"), ("Laos", "Vientiane"),
    ("Uruguay", "Montevideo"), ("Slovenia", "Ljubljana"), ("Latvia", "Riga"), ("Madagascar", "Antananarivo"),
    ("Kyrgyzstan", "Bishkek"), ("Eritrea", "Asmara"), ("Suriname", "Paramaribo"),
]
# Cities models confuse with capitals: naming one first is wrong.
_CITY_DISTRACTORS = ["Sydney", "Melbourne", "Toronto", "Rio de Janeiro", "Sao Paulo", "Istanbul", "Zurich",
                     "Geneva", "Lagos", "Karachi", "Auckland", "Casablanca", "Almaty", "New York", "Shanghai"]
_SYMBOLS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("sodium", "Na"), ("potassium", "K"),
            ("oxygen", "O"), ("hydrogen", "H"), ("carbon", "C"), ("lead", "Pb"), ("copper", "Cu"),
            ("tin", "Sn"), ("mercury", "Hg"), ("helium", "He"), ("calcium", "Ca")]
# (question, expected, other plausible answers)
_MISC = [
    ("Which planet is the largest in our solar system?", "Jupiter", ["Saturn", "Earth", "Neptune", "Mars", "Uranus"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Jupiter", "Venus", "Mercury", "Saturn"]),
    ("Who wrote the play Romeo and Juliet?", "Shakespeare", ["Marlowe", "Dickens", "Chaucer", "Milton"]),
    ("What is the largest ocean on Earth?", "Pacific", ["Atlantic", "Indian", "Arctic", "Southern"]),
    ("What gas do plants absorb from the air for photosynthesis?", "carbon dioxide", ["oxygen", "nitrogen", "hydrogen"]),
    ("What is the chemical formula of water?", "H2O", ["CO2", "O2", "H2O2", "NaCl"]),
    ("Which animal is known as the king of the jungle?", "lion", ["tiger", "elephant", "gorilla", "leopard"]),
    ("On which continent is Egypt?", "Africa", ["Asia", "Europe", "South America"]),
    ("Who painted the Mona Lisa?", "Leonardo", ["Michelangelo", "Raphael", "Picasso", "Van Gogh", "Rembrandt"]),
    ("What is the hardest natural substance?", "diamond", ["quartz", "graphite", "steel", "granite"]),
    ("Which language has the most native speakers?", "Mandarin", ["English", "Spanish", "Hindi", "Arabic"]),
    ("Who developed the theory of general relativity?", "Einstein", ["Newton", "Bohr", "Galileo", "Hawking", "Curie"]),
]


def _factual(rng: random.Random) -> list[tuple[str, str, str, Callable[[str], bool]]]:
    out: list[tuple[str, str, str, Callable[[str], bool]]] = []
    cities = [c for _, c in _CAPITALS] + _CITY_DISTRACTORS
    for country, capital in rng.sample(_CAPITALS, 34):
        prompt = rng.choice(["What is the capital of {c}?", "Name the capital city of {c}.",
                             "Which city is the capital of {c}?"]).format(c=country)
        out.append(("capital", prompt, capital, first_of_checker(capital, cities)))
    symbols = [s for _, s in _SYMBOLS]
    for element, symbol in _SYMBOLS:
        prompt = f"What is the chemical symbol for {element}?"
        # Symbols are case-sensitive and short ("C", "O"): match them exactly, as whole words.
        pats = {s: re.compile(r"(?<![A-Za-z])" + s + r"(?![a-z])") for s in symbols}

        def check(answer: str, symbol: str = symbol, pats: dict[str, re.Pattern[str]] = pats) -> bool:
            hits = sorted(((m.start(), -len(s), s) for s, p in pats.items() if (m := p.search(answer))))
            return bool(hits) and hits[0][2] == symbol
        out.append(("symbol", prompt, symbol, check))
    for question, answer, others in _MISC:
        out.append(("misc", question, answer, first_of_checker(answer, others)))
    return out


_WORDS_FOR_STRINGS = ["apple", "banana", "garden", "planet", "window", "rocket", "pencil", "silver", "bottle",
                      "strawberry", "mississippi", "elephant", "keyboard", "balloon", "committee", "bookkeeper",
                      "tomato", "yellow", "coffee", "butterfly", "letter", "mirror", "puzzle", "summer"]


def _strings(rng: random.Random) -> list[tuple[str, str, str, Callable[[str], bool]]]:
    out: list[tuple[str, str, str, Callable[[str], bool]]] = []
    per = PER_FAMILY // 4
    for word in rng.sample(_WORDS_FOR_STRINGS, per):
        prompt = rng.choice(["Write the word '{w}' in uppercase letters.", "Convert '{w}' to upper case.",
                             "Rewrite '{w}' in all capital letters."]).format(w=word)
        up = word.upper()
        out.append(("upper", prompt, up, lambda a, up=up: re.search(r"(?<![A-Za-z])" + up + r"(?![A-Za-z])", a) is not None))
    for word in rng.sample(_WORDS_FOR_STRINGS, per):
        prompt = rng.choice(["How many letters are in the word '{w}'?", "Count the letters in '{w}'."]).format(w=word)
        out.append(("length", prompt, str(len(word)), numeric_checker(prompt, len(word))))
    made = 0
    while made < per:
        word = rng.choice(_WORDS_FOR_STRINGS)
        letter = rng.choice(sorted(set(word)))
        n = word.count(letter)
        if n < 1:
            continue
        prompt = f"How many times does the letter '{letter}' appear in the word '{word}'?"
        out.append(("count", prompt, str(n), numeric_checker(prompt, n)))
        made += 1
    for word in rng.sample(_WORDS_FOR_STRINGS, per):
        prompt = rng.choice(["Reverse the word '{w}'.", "Spell '{w}' backwards.",
                             "Write the letters of '{w}' in reverse order."]).format(w=word)
        rev = word[::-1]
        out.append(("reverse", prompt, rev,
                    lambda a, rev=rev: re.search(r"(?<![a-z])" + rev + r"(?![a-z])", a.lower()) is not None))
    return out


def _code(rng: random.Random) -> list[tuple[str, str, str, Callable[[str], bool]]]:
    out: list[tuple[str, str, str, Callable[[str], bool]]] = []
    words = ["cat", "house", "python", "data", "river", "music", "cloud", "tiger"]

    def draw(level: str) -> str:
        if level == "arith":
            a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9)
            return rng.choice([f"{a} + {b} * {c}", f"({a} + {b}) * {c}", f"{a * c + b} // {c}", f"{a * c + b} % {c}",
                               f"{a} ** 2"])
        if level == "len":
            w = rng.choice(words)
            return rng.choice([f"len('{w}')", f"len('{w}' + '{rng.choice(words)}')", f"len([{', '.join(str(rng.randint(1, 9)) for _ in range(rng.randint(2, 6)))}])"])
        if level == "index":
            xs = rng.sample(range(10, 99), 4)
            # Combined, so the value is not one of the list's own numbers (see the numeric checker).
            return rng.choice([f"{xs}[{rng.randint(0, 3)}] * 2", f"{xs}[-1] + {rng.randint(2, 9)}",
                               f"max({xs}) - min({xs})", f"sum({xs[:3]})"])
        if level == "slice":
            w = rng.choice(words)
            return rng.choice([f"'{w}'[::-1]", f"'{w}'[1:3]", f"'{w}'[0]", f"'{w}' * 2"])
        if level == "method":
            w = rng.choice(words)
            return rng.choice([f"'{w}'.upper()", f"'{w}'.replace('{w[0]}', 'x')", f"'-'.join(['{w}', 'a'])",
                               f"'{w}'.count('{w[1]}')", f"'{w}, {rng.choice(words)}'.split(', ')"])
        n = rng.randint(3, 8)
        return rng.choice([f"sum(range({n}))", f"list(range({n}))", f"sorted([{rng.randint(1, 9)}, {rng.randint(1, 9)}, {rng.randint(1, 9)}])",
                           f"[x * 2 for x in range({n})]", f"abs(-{n * 3})"])

    levels = ("arith", "len", "index", "slice", "method", "builtin")
    made, seen = 0, set()
    while made < PER_FAMILY:
        level = levels[made * len(levels) // PER_FAMILY]
        expr = draw(level)
        if expr in seen:
            continue
        value = eval(expr, {"__builtins__": {"len": len, "max": max, "min": min, "sum": sum, "range": range, "list": list,
                                                "sorted": sorted, "abs": abs}})  # our own generated expressions
        prompt = rng.choice(["What does this Python expression evaluate to? {e}",
                             "In Python, what is the value of {e}?",
                             "What is the result of the Python expression `{e}`?"]).format(e=expr)
        if isinstance(value, int):
            if value < 0 or value in numbers_in(prompt):
                continue
            checker = numeric_checker(prompt, value)
        else:
            target = _norm(repr(value) if isinstance(value, list) else value)
            # The prompt contains the expression; the value itself must not be a substring of it.
            if target in _norm(expr):
                continue
            checker = (lambda a, target=target: target in _norm(a))
        seen.add(expr)
        out.append((level, prompt, repr(value), checker))
        made += 1
    return out


# (level, prompt template, subjects as (subject phrase, keyword the answer must mention))
_WRITING = [
    ("poem", ["Write a short poem about {s}.", "Write a four-line poem about {s}.", "Compose a poem about {s}."],
     [("the ocean", "ocean"), ("autumn leaves", "leaves"), ("the moon", "moon"), ("a lonely cat", "cat"),
      ("winter snow", "snow"), ("the city at night", "city"), ("a mountain", "mountain"), ("rain", "rain")]),
    ("email", ["Write a short email to your manager asking for {s}.", "Write a brief email to a colleague about {s}.",
               "Draft a polite email to your team about {s}."],
     [("a day off on Friday", "Friday"), ("a new laptop", "laptop"), ("the project deadline", "deadline"),
      ("a meeting next week", "meeting"), ("the budget report", "budget"), ("a training course", "training")]),
    ("story", ["Write a three-sentence story about {s}.", "Tell a very short story about {s}.",
               "Write a short bedtime story about {s}."],
     [("a robot who learns to paint", "robot"), ("a dragon and a knight", "dragon"), ("a lost dog", "dog"),
      ("a pirate ship", "pirate"), ("a haunted house", "house"), ("a girl who finds a key", "key")]),
    ("description", ["Describe {s} in a few sentences.", "Write a short paragraph describing {s}.",
                     "Paint a picture in words of {s}."],
     [("a sunny beach", "beach"), ("your favourite food", "food"), ("a busy market", "market"),
      ("a forest in spring", "forest"), ("an old library", "library"), ("a train station", "train")]),
]


def _writing(rng: random.Random) -> list[tuple[str, str, str, Callable[[str], bool]]]:
    out: list[tuple[str, str, str, Callable[[str], bool]]] = []
    per = PER_FAMILY // len(_WRITING)
    for level, templates, subjects in _WRITING:
        combos = [(t, subj) for subj in subjects for t in templates]
        for template, (subject, keyword) in rng.sample(combos, per):
            prompt = template.format(s=subject)
            pat = re.compile(r"(?<!\w)" + re.escape(keyword.lower()), re.IGNORECASE)

            def check(answer: str, pat: re.Pattern[str] = pat) -> bool:
                return pat.search(answer) is not None and len(answer.split()) >= WRITING_MIN_WORDS
            out.append((level, prompt, f"mentions {keyword!r} and has >= {WRITING_MIN_WORDS} words", check))
    return out


_BUILDERS = {"arithmetic": _arithmetic, "word": _word, "factual": _factual, "strings": _strings, "code": _code,
             "writing": _writing}


def build_tasks(seed: int = DEFAULT_SEED) -> list[Task]:
    """Every family's tasks, deterministic for `seed` (each family draws from its own stream)."""
    tasks: list[Task] = []
    for k, family in enumerate(FAMILIES):
        rng = random.Random(seed * 1000 + k)  # not hash(): str hashes are salted per process
        counters: dict[str, int] = {}
        for level, prompt, expected, checker in _BUILDERS[family](rng):
            n = counters[level] = counters.get(level, 0) + 1
            tasks.append(Task(f"{family}-{level}-{n:03d}", family, level, prompt, expected, checker))
    return tasks


if __name__ == "__main__":
    from collections import Counter

    ts = build_tasks()
    print(len(ts), Counter(t.family for t in ts))
    for t in ts[::23]:
        print(t.id, "|", t.prompt, "|", t.expected)
