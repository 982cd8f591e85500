"""Does the answer cache's meaning guard stop false semantic hits without losing paraphrases?

A semantic cache serves a cached answer to a *different* prompt whose MiniLM embedding is
at least `[cache] threshold` (0.95) cosine-similar. Negations, opposites, swapped operands
and other numbers score that high too ("Convert 100 Fahrenheit to Celsius" vs "... Celsius
to Fahrenheit": 0.987). edge/cache_guard.py refuses such hits by reading the words.

The pair set is generated below, in code: families of (cached question, new question)
pairs, each either a paraphrase (the cached answer is right: it should be served) or a
near miss (negation, antonym, swapped operands, changed numbers: it must not be). Both
sides are embedded with the installed MiniLM encoder, the cached one is stored in a real
AnswerCache (its own partition per pair, SQLite in a temp dir), the new one looked up,
guard off and guard on, at the configured threshold and at --thresholds.

  false_hit_rate       near misses served / near misses
  paraphrase_hit_rate  paraphrases served / paraphrases (a paraphrase below the threshold
                       is a miss either way: `reach_threshold` says how many get there)
  paraphrase_hits_kept paraphrase hits with the guard on / without it

Top-level figures cover every family; `dev` and `held_out` split them. How the split was
kept (the same person wrote the families and the guard, in one sitting, so "held out"
means "not tuned on", not "independent data"):

  round 1  the DEV and SEEN_IN_ROUND_1 families were written before the guard existed; the
           guard was written and checked on DEV only (0 false hits, all paraphrases kept,
           no tuning needed), then scored once on SEEN_IN_ROUND_1: 4 of 82 near misses
           served at 0.95 (4.9%; "100 rupees in dollars" reversed, and a shared surname
           pushing a swapped name out of the window), every paraphrase hit kept.
  round 2  SEEN_IN_ROUND_2 written before any change; the window went from 2 to 3 words
           and "in" after a quantity became directional, checked on the dev families
           (which now include round 1's), then scored once on SEEN_IN_ROUND_2: 9 of 77
           served (11.7%; all operand swaps without a directional word: "7 a multiple of
           91", "15 minus 45", "acres are in 2 hectares"), every paraphrase hit kept.
  round 3  HELD_OUT written before any change; the "two words trade places around one
           that stays" rule, vs/versus as symmetric, accept/decline and heavy/light in
           the table, checked on the dev families, then scored once on HELD_OUT: the
           `held_out` section. The guard has not changed since.

Pairs come from templates, many per template, so a template the guard gets wrong fails
several pairs at once: read the rates as coarse. `--mistakes` lists what still goes wrong.

    .venv/bin/python benchmarks/cache_guard.py                  # every family, about 5 s
    .venv/bin/python benchmarks/cache_guard.py --split dev      # what to tune on
    .venv/bin/python benchmarks/cache_guard.py --mistakes       # plus the guard's mistakes at 0.95
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import pct  # noqa: E402

from edge.answer_cache import AnswerCache, CachedAnswer, CacheQuery  # noqa: E402
from edge.cache_guard import meaning_change  # noqa: E402
from edge.config import CacheSettings  # noqa: E402

# -- the pair set ----------------------------------------------------------------------------
#
# Each family is one way a user's second question relates to the first: a paraphrase (the
# cached answer is right for it) or a near miss (the cached answer is wrong for it). DEV and
# SEEN_IN_ROUND_1 were written before edge/cache_guard.py existed, SEEN_IN_ROUND_2 and
# HELD_OUT before the guard changes of rounds 2 and 3 (see the module docstring).


@dataclass(frozen=True)
class Family:
    name: str
    kind: str          # "paraphrase" (should be served) or "near_miss" (must not be)
    category: str      # what changes: wording, order, negation, antonym, operands, numbers
    split: str         # "dev" (the guard was tuned on it) or "held_out" (scored once, never tuned on)
    pairs: tuple[tuple[str, str], ...]   # (cached question, new question)


def _cycle(templates: list[tuple[str, str]], fillers: Iterable[dict[str, str]],
           rounds: int = 1) -> tuple[tuple[str, str], ...]:
    """Each filler dict through the next template pair in turn, `rounds` times (each round
    shifts which template a filler meets); duplicates dropped, order kept."""
    fs = list(fillers)
    out = [(templates[(i + r) % len(templates)][0].format(**f), templates[(i + r) % len(templates)][1].format(**f))
           for r in range(rounds) for i, f in enumerate(fs)]
    return tuple(dict.fromkeys(out))


QUESTIONS_DEV = [
    "What is the capital of Australia?", "How many legs does a spider have?", "Who painted the Mona Lisa?",
    "What is the boiling point of water at sea level?", "How does a heat pump work?",
    "What causes the seasons on Earth?", "How long should I boil an egg?", "What is a prime number?",
    "Why is the sky blue?", "How do vaccines work?", "What is the tallest mountain in Europe?",
    "How do I reset my router?", "What does a circuit breaker do?", "How far is the Moon from Earth?",
    "What is photosynthesis?", "Who wrote Pride and Prejudice?", "What is the speed of light?",
    "How do I make sourdough starter?", "What is inflation?", "How do solar panels work?",
]

FEATURES = ["dark mode", "Bluetooth", "notifications", "autocorrect", "location services", "two-factor authentication",
            "auto-updates", "the firewall", "airplane mode", "night light"]

UNITS_DEV = [("100", "Fahrenheit", "Celsius"), ("5", "miles", "kilometers"), ("3", "pounds", "kilograms"),
             ("10", "inches", "centimeters"), ("2", "gallons", "liters"), ("50", "euros", "dollars"),
             ("8", "ounces", "grams"), ("12", "feet", "meters")]

CITIES = [("Paris", "London"), ("Berlin", "Rome"), ("Madrid", "Lisbon"), ("Tokyo", "Osaka"), ("Boston", "Chicago"),
          ("Dublin", "Edinburgh"), ("Vienna", "Prague"), ("Sydney", "Melbourne")]

DEV = [
    Family("polite_wrappers", "paraphrase", "wording", "dev", tuple(
        (q, w.format(q=q, bare=q.rstrip("?"), lq=q[0].lower() + q[1:])) for q, w in zip(QUESTIONS_DEV, itertools.cycle(
            ["{q} Thanks!", "Please answer: {q}", "{bare}", "Quick question: {lq}", "Hi! {q}", "{q} Please be brief."]))
    )),
    Family("fronted_clause", "paraphrase", "order", "dev", _cycle(
        [("What is the {thing} in {place}?", "In {place}, what is the {thing}?"),
         ("At {place}, what is the {thing}?", "What is the {thing} at {place}?")],
        [{"thing": t, "place": p} for t, p in [
            ("population", "Japan"), ("boiling point of water", "sea level"), ("official language", "Brazil"),
            ("average rainfall", "Seattle"), ("tallest building", "Dubai"), ("local time", "noon in London"),
            ("speed limit", "German motorways"), ("best time to visit", "Iceland"), ("currency", "Switzerland"),
            ("legal drinking age", "Canada"), ("main export", "Chile"), ("oldest university", "England")]])),
    Family("how_do_i", "paraphrase", "wording", "dev", _cycle(
        [("How do I turn on {f}?", "How can I turn on {f}?"), ("How do I turn off {f}?", "How can I turn off {f}?"),
         ("How do I enable {f}?", "How do I enable {f} on my phone?"),
         ("How do I disable {f}?", "What's the way to disable {f}?")],
        [{"f": f} for f in FEATURES + FEATURES[:4]])),
    Family("negated_both", "paraphrase", "negation", "dev", _cycle(
        [("Why doesn't my {d} {v}?", "Why won't my {d} {v}?"), ("My {d} doesn't {v}. Why?", "Why doesn't my {d} {v}?"),
         ("Why does my {d} not {v}?", "Why doesn't my {d} {v}?")],
        [{"d": d, "v": v} for d, v in [
            ("laptop", "turn on"), ("phone", "charge"), ("printer", "connect to Wi-Fi"), ("car", "start"),
            ("dishwasher", "drain"), ("microwave", "heat food"), ("headphones", "pair"), ("fridge", "get cold"),
            ("TV", "find any channels"), ("washing machine", "spin"), ("router", "reboot"), ("mouse", "scroll")]])),
    Family("same_numbers", "paraphrase", "numbers", "dev", _cycle(
        [("What is {a} times {b}?", "What's {a} times {b}?"),
         ("Convert {n} {u1} to {u2}", "How do I convert {n} {u1} to {u2}?"),
         ("What is {a} plus {b}?", "Calculate {a} plus {b}")],
        [{"a": a, "b": b, "n": n, "u1": u1, "u2": u2} for (a, b), (n, u1, u2) in zip(
            [("17", "23"), ("12", "12"), ("48", "7"), ("365", "24"), ("19", "31"), ("250", "4"), ("64", "8"),
             ("7", "9"), ("1024", "2"), ("15", "15"), ("99", "3"), ("33", "11")], itertools.cycle(UNITS_DEV))])),

    Family("negation_inserted", "near_miss", "negation", "dev", _cycle(
        [("Is it safe to {act}?", "Is it not safe to {act}?"), ("Should I {act}?", "Should I never {act}?"),
         ("Can I {act}?", "Can't I {act}?"), ("Is it a good idea to {act}?", "Is it not a good idea to {act}?")],
        [{"act": a} for a in [
            "eat raw eggs while pregnant", "take ibuprofen with coffee", "charge my phone overnight",
            "run every day", "drink tap water in Mexico", "leave my car running", "freeze cooked rice",
            "give my dog grapes", "use bleach on mold", "wash jeans in hot water", "sleep with wet hair",
            "reuse plastic bottles"]], rounds=2)),
    Family("with_without", "near_miss", "negation", "dev", _cycle(
        [("How do I make {dish} with {ing}?", "How do I make {dish} without {ing}?")],
        [{"dish": d, "ing": i} for d, i in [
            ("pancakes", "eggs"), ("bread", "yeast"), ("a cake", "butter"), ("pizza dough", "a mixer"),
            ("mayonnaise", "oil"), ("pasta", "flour"), ("cookies", "baking soda"), ("a smoothie", "milk")]])),
    Family("antonym_swap", "near_miss", "antonym", "dev", _cycle(
        [("How do I turn on {f}?", "How do I turn off {f}?"), ("How do I enable {f}?", "How do I disable {f}?"),
         ("How can I increase my {m}?", "How can I decrease my {m}?"),
         ("What should I do before {e}?", "What should I do after {e}?"),
         ("What is the maximum {lim}?", "What is the minimum {lim}?"),
         ("How do I open {obj}?", "How do I close {obj}?"),
         ("Is now a good time to buy {asset}?", "Is now a good time to sell {asset}?"),
         ("How do I add {x} to my account?", "How do I remove {x} from my account?")],
        [{"f": f, "m": m, "e": e, "lim": lim, "obj": o, "asset": a, "x": x} for f, m, e, lim, o, a, x in zip(
            FEATURES,
            ["heart rate", "credit score", "screen brightness", "metabolism", "water pressure", "blood sugar",
             "font size", "download speed", "fuel economy", "running speed"],
            ["a marathon", "a job interview", "surgery", "a long flight", "a workout", "a vaccine", "an exam",
             "a tattoo", "moving house", "a dental cleaning"],
            ["speed on a highway", "dose of paracetamol", "file size for email", "weight for carry-on luggage",
             "age to rent a car", "temperature for a fridge", "number of guests", "loan amount", "page count",
             "password length"],
            ["a new tab", "a PDF in Word", "the terminal", "a port on my firewall", "a bank account", "the sunroof",
             "a zip file", "a ticket in Jira", "the side panel", "a Git branch"],
            ["gold", "Bitcoin", "Apple stock", "a house", "euros", "index funds", "silver", "Tesla shares",
             "a used car", "bonds"],
            ["a credit card", "a second email", "a phone number", "a payment method", "a family member",
             "a recovery key", "a device", "a shipping address", "a user", "a signature"])], rounds=3)),
    Family("operand_swap", "near_miss", "operands", "dev", (
        *_cycle([("Convert {n} {u1} to {u2}", "Convert {n} {u2} to {u1}")],
                [{"n": n, "u1": u1, "u2": u2} for n, u1, u2 in UNITS_DEV]),
        *_cycle([("Cheapest flights from {a} to {b}", "Cheapest flights from {b} to {a}")],
                [{"a": a, "b": b} for a, b in CITIES]),
        *_cycle([("Is {a} greater than {b}?", "Is {b} greater than {a}?")],
                [{"a": a, "b": b} for a, b in [("7", "3"), ("0.5", "0.45"), ("2^10", "1000"), ("pi", "3.2"),
                                               ("-4", "-7"), ("1/3", "0.3")]]),
    )),
    Family("number_change", "near_miss", "numbers", "dev", _cycle(
        [("What is {a} times {b}?", "What is {a} times {c}?"),
         ("How many {u2} are in {n} {u1}?", "How many {u2} are in {m} {u1}?"),
         ("Who won the World Cup in {y}?", "Who won the World Cup in {z}?")],
        [{"a": a, "b": b, "c": c, "n": n, "m": m, "u1": u1, "u2": u2, "y": y, "z": z}
         for (a, b, c), (n, m), (_, u1, u2), (y, z) in zip(
            [("17", "23", "24"), ("12", "12", "13"), ("48", "7", "8"), ("365", "24", "25"), ("19", "31", "13"),
             ("250", "4", "40")],
            [("5", "6"), ("3", "30"), ("10", "12"), ("2", "4"), ("7", "70"), ("1", "100")],
            itertools.cycle(UNITS_DEV),
            [("2018", "2022"), ("2014", "2010"), ("1998", "2002"), ("2006", "2010"), ("1986", "1990"),
             ("2002", "2006")])], rounds=3)),
]

# Held out in round 1 (the guard's first version served 4 of their 82 near misses); its
# misses then shaped round 2, so from round 2 on they are dev families.
SEEN_IN_ROUND_1 = [
    Family("contractions_and_case", "paraphrase", "wording", "dev", _cycle(
        [("What is the best way to {t}?", "What's the best way to {t}?"),
         ("What is the best way to {t}?", "whats the best way to {t}"),
         ("Tell me how to {t}.", "Tell me how to {t}, please.")],
        [{"t": t} for t in [
            "turn off notifications at night", "move photos from my phone to my laptop", "learn Spanish fast",
            "clean a cast iron pan", "store fresh herbs", "get rid of fruit flies", "back up an iPhone",
            "remove a stripped screw", "fall asleep faster", "sharpen a kitchen knife", "lower my energy bill",
            "stop a dog from barking", "transfer money to a friend abroad", "keep avocados from browning"]])),
    Family("synonym_verbs", "paraphrase", "wording", "dev", _cycle(
        [("Explain {c} in simple terms.", "Explain {c} in simple words."),
         ("Can you explain {c}?", "Could you explain {c}?"),
         ("Give me tips for {x}.", "Give me some tips for {x}.")],
        [{"c": c, "x": x} for c, x in zip(
            ["quantum entanglement", "compound interest", "how a blockchain works", "the greenhouse effect",
             "machine learning", "supply and demand", "black holes", "the immune system", "public key cryptography",
             "plate tectonics", "how a mortgage works", "the theory of relativity"],
            ["a job interview", "public speaking", "saving money", "running a first marathon", "studying for exams",
             "working from home", "sleeping better", "learning to cook", "negotiating a salary",
             "travelling with a baby", "growing tomatoes", "writing a cover letter"])])),
    Family("moved_clause_with_direction", "paraphrase", "order", "dev", _cycle(
        [("When travelling from {a} to {b}, do I need a visa?", "Do I need a visa when travelling from {a} to {b}?"),
         ("For a {o}, what should I wear?", "What should I wear for a {o}?"),
         ("If I move from {a} to {b}, will my phone plan work?", "Will my phone plan work if I move from {a} to {b}?")],
        [{"a": a, "b": b, "o": o} for (a, b), o in zip(
            [("Canada", "Mexico"), ("India", "Thailand"), ("the UK", "France"), ("Germany", "Norway"),
             ("Brazil", "Argentina"), ("Japan", "South Korea"), ("Kenya", "Tanzania"), ("Spain", "Morocco"),
             ("the US", "Canada"), ("Australia", "New Zealand"), ("Italy", "Croatia"), ("Chile", "Peru")],
            ["job interview", "summer wedding", "first date", "funeral", "business dinner", "graduation",
             "beach party", "hiking trip", "conference talk", "winter wedding", "theatre night", "christening"])])),
    Family("same_numbers_other_forms", "paraphrase", "numbers", "dev", _cycle(
        [("How many grams are in {n} ounces?", "How many grams are there in {n} ounces?"),
         ("Is {a} bigger than {b}?", "Is {a} larger than {b}?"),
         ("What is {p}% of {q}?", "Calculate {p}% of {q}")],
        [{"n": n, "a": a, "b": b, "p": p, "q": q} for n, (a, b), (p, q) in zip(
            ["2", "3", "1.5", "12", "16", "4", "8", "10", "5", "20", "6", "0.5"],
            [("9", "11"), ("0.7", "0.65"), ("3/4", "0.8"), ("100", "99"), ("2^8", "250"), ("1.01", "1.1"),
             ("17", "71"), ("0.333", "1/3"), ("1000", "999"), ("64", "46"), ("2.5", "2.05"), ("-3", "-2")],
            [("15", "80"), ("20", "45"), ("7.5", "200"), ("12", "50"), ("3", "900"), ("50", "37"), ("18", "60"),
             ("35", "120"), ("2", "1500"), ("90", "90"), ("33", "300"), ("8", "250")])])),
    Family("negation_forms_both", "paraphrase", "negation", "dev", _cycle(
        [("Why can't I log in to {s}?", "Why am I not able to log in to {s}?"),
         ("I can't {x}, what should I do?", "What should I do if I can't {x}?"),
         ("Why isn't {s} working?", "Why is {s} not working?")],
        [{"s": s, "x": x} for s, x in zip(
            ["Gmail", "Netflix", "Zoom", "my bank app", "Steam", "Outlook", "Slack", "Spotify", "Instagram",
             "GitHub", "Dropbox", "LinkedIn"],
            ["sleep", "remember my password", "find my passport", "open this file", "hear anything in my headphones",
             "get a doctor's appointment", "stop coughing", "pay my rent this month", "focus at work",
             "unlock my phone", "print from my laptop", "connect to the VPN"])])),

    Family("negation_other_forms", "near_miss", "negation", "dev", _cycle(
        [("Which {cat} contain {sub}?", "Which {cat} don't contain {sub}?"),
         ("Things to do in {city} with kids", "Things to do in {city} without kids"),
         ("Is there a way to {x}?", "Is there no way to {x}?"),
         ("Does {d} need {n}?", "Does {d} not need {n}?")],
        [{"city": c, "x": x, "d": d, "n": n, "cat": cat, "sub": sub} for c, x, (d, n), (cat, sub) in zip(
            [a for a, _ in CITIES] + ["Lisbon", "Oslo"],
            ["recover a deleted WhatsApp message", "get a refund on a plane ticket", "cancel Amazon Prime early",
             "speed up an old laptop", "undo sending an email", "remove a watermark from a PDF",
             "see who viewed my profile", "transfer a game license", "merge two Google accounts",
             "unsend a text", "reset a BIOS password", "extend a tourist visa"],
            [("a sourdough starter", "daily feeding"), ("a cactus", "direct sunlight"), ("a Tesla", "an oil change"),
             ("a puppy", "a rabies shot"), ("a passport", "a photo"), ("a router", "a static IP"),
             ("bread dough", "a second rise"), ("an LLC", "a registered agent"), ("a newborn", "vitamin D drops"),
             ("a laptop", "antivirus software")] * 2,
            [("foods", "gluten"), ("sodas", "caffeine"), ("cheeses", "lactose"), ("painkillers", "aspirin"),
             ("sweeteners", "sugar alcohols"), ("shampoos", "sulfates")] * 2)], rounds=2)),
    Family("antonym_other_pairs", "near_miss", "antonym", "dev", _cycle(
        [("How do I lock {dev}?", "How do I unlock {dev}?"),
         ("How do I upload files to {svc}?", "How do I download files from {svc}?"),
         ("How do I install {app}?", "How do I uninstall {app}?"),
         ("How do I show hidden files in {os}?", "How do I hide hidden files in {os}?"),
         ("How do I start {proc}?", "How do I stop {proc}?"),
         ("Is {food} better hot or cold?", "Is {food} worse hot or cold?"),
         ("What is the first step to {goal}?", "What is the last step to {goal}?"),
         ("How do I sort a list in ascending order in {lang}?", "How do I sort a list in descending order in {lang}?"),
         ("How do I zoom in on {app}?", "How do I zoom out on {app}?"),
         ("Which foods are high in {nut}?", "Which foods are low in {nut}?")],
        [{"dev": d, "svc": s, "app": a, "os": o, "proc": p, "food": f, "goal": g, "lang": la, "nut": n}
         for d, s, a, o, p, f, g, la, n in zip(
            ["my iPhone", "a Windows PC", "my car remotely", "a Mac screen", "an Android phone"] * 2,
            ["Google Drive", "Dropbox", "OneDrive", "iCloud", "Box"] * 2,
            ["Zoom", "Photoshop", "Chrome", "VS Code", "Spotify"] * 2,
            ["Windows 11", "macOS", "Ubuntu", "Finder", "Windows 10"] * 2,
            ["a Docker container", "the Apache server", "a systemd service", "a cron job", "a Kubernetes pod"] * 2,
            ["pizza", "fried chicken", "lasagna", "curry", "pasta salad"] * 2,
            ["buying a house", "starting a business", "learning piano", "writing a novel", "adopting a dog"] * 2,
            ["Python", "JavaScript", "Java", "SQL", "Excel"] * 2,
            ["iron", "potassium", "sodium", "fibre", "protein"] * 2)], rounds=3)),
    Family("operands_other_forms", "near_miss", "operands", "dev", _cycle(
        [("Translate this from {l1} to {l2}: thank you very much",
          "Translate this from {l2} to {l1}: thank you very much"),
         ("Is {p1} older than {p2}?", "Is {p2} older than {p1}?"),
         ("Divide {a} by {b}", "Divide {b} by {a}"),
         ("How much is 100 {c1} in {c2}?", "How much is 100 {c2} in {c1}?"),
         ("How do I move money from my {acc1} to my {acc2}?", "How do I move money from my {acc2} to my {acc1}?")],
        [{"l1": l1, "l2": l2, "p1": p1, "p2": p2, "a": a, "b": b, "c1": c1, "c2": c2, "acc1": x1, "acc2": x2}
         for (l1, l2), (p1, p2), (a, b), (c1, c2), (x1, x2) in zip(
            [("English", "German"), ("French", "Italian"), ("Spanish", "Portuguese"), ("Dutch", "English")] * 2,
            [("Barack Obama", "Michelle Obama"), ("the Eiffel Tower", "the Statue of Liberty"), ("Python", "Java"),
             ("Mick Jagger", "Paul McCartney")] * 2,
            [("120", "8"), ("45", "9"), ("1000", "25"), ("7", "2")] * 2,
            [("dollars", "euros"), ("pounds", "yen"), ("francs", "krona"), ("rupees", "dollars")] * 2,
            [("savings account", "checking account"), ("PayPal", "bank account"), ("ISA", "current account"),
             ("brokerage account", "IRA")] * 2)], rounds=3)),
    Family("numbers_other_forms", "near_miss", "numbers", "dev", _cycle(
        [("How much flour for {w1} cups of water?", "How much flour for {w2} cups of water?"),
         ("What is {p}% of {q}?", "What is {p2}% of {q}?"),
         ("Is {d1} mg of melatonin safe for a {age}-year-old?", "Is {d2} mg of melatonin safe for a {age}-year-old?"),
         ("Set an alarm for {t1} am", "Set an alarm for {t2} am")],
        [{"w1": w1, "w2": w2, "p": p, "p2": p2, "q": q, "d1": d1, "d2": d2, "age": age, "t1": t1, "t2": t2}
         for (w1, w2), (p, p2, q), (d1, d2, age), (t1, t2) in zip(
            [("two", "three"), ("one", "four"), ("five", "six"), ("ten", "twelve"), ("three", "two"),
             ("eight", "nine"), ("half a", "one and a half"), ("four", "forty")],
            [("15", "20", "80"), ("7.5", "75", "200"), ("12", "21", "50"), ("3", "30", "900"), ("25", "52", "64"),
             ("10", "1", "350"), ("40", "4", "120"), ("5", "50", "18")],
            [("1", "10", "8"), ("0.5", "5", "12"), ("3", "30", "10"), ("2", "20", "6"), ("5", "0.5", "14"),
             ("1", "3", "4"), ("10", "1", "16"), ("4", "2", "9")],
            [("6", "7"), ("5:30", "6:30"), ("7:15", "7:45"), ("4", "5"), ("6:00", "8:00"), ("9", "10"),
             ("5:45", "5:15"), ("11", "1")])], rounds=2)),
]

# Held out in round 2 (the second version served 9 of their 77 near misses, all operand
# swaps without a directional word); its misses shaped round 3, so they are dev families now.
SEEN_IN_ROUND_2 = [
    Family("question_word_swaps", "paraphrase", "wording", "dev", _cycle(
        [("What time does {place} open on Sundays?", "When does {place} open on Sundays?"),
         ("How much does {x} cost?", "What does {x} cost?"),
         ("Where can I buy {x}?", "Where can I get {x}?")],
        [{"place": p, "x": x} for p, x in zip(
            ["the Louvre", "Costco", "the post office", "IKEA", "the DMV", "Trader Joe's", "the British Museum",
             "Walmart", "the public library", "Home Depot", "the Vatican Museums", "Target"],
            ["a passport renewal", "a Netflix subscription", "an iPhone 15", "a Eurail pass", "a flu shot",
             "a PlayStation 5", "a driving lesson", "a Costco membership", "a Kindle", "an oil change",
             "a haircut in Paris", "a used Prius"])], rounds=2)),
    Family("fronted_time_and_place", "paraphrase", "order", "dev", _cycle(
        [("In {month}, is it cold in {city}?", "Is it cold in {city} in {month}?"),
         ("After {event}, how long should I wait to {act}?", "How long should I wait to {act} after {event}?"),
         ("Before {event}, what should I eat?", "What should I eat before {event}?")],
        [{"month": m, "city": c, "event": e, "act": a} for m, c, (e, a) in zip(
            ["January", "March", "October", "December", "July", "April", "November", "February", "May",
             "September", "June", "August"],
            ["Oslo", "Toronto", "Denver", "Seoul", "Cape Town", "Reykjavik", "Munich", "Beijing", "Moscow",
             "Santiago", "Helsinki", "Montreal"],
            [("eating", "swim"), ("a workout", "eat"), ("a tattoo", "shower"), ("surgery", "drive"),
             ("a marathon", "run again"), ("drinking", "drive"), ("a filling", "eat"), ("a flu shot", "exercise"),
             ("painting a room", "sleep in it"), ("a haircut", "wash my hair"), ("a meal", "lie down"),
             ("a blood test", "eat")])])),
    Family("conversions_same_direction", "paraphrase", "numbers", "dev", _cycle(
        [("How many {u2} is {n} {u1}?", "How many {u2} are {n} {u1}?"),
         ("Convert {n} {u1} into {u2}", "Convert {n} {u1} to {u2}"),
         ("What is {n} {u1} in {u2}?", "How much is {n} {u1} in {u2}?")],
        [{"n": n, "u1": u1, "u2": u2} for n, u1, u2 in [
            ("20", "euros", "dollars"), ("6", "feet", "meters"), ("250", "grams", "cups"), ("40", "miles", "km"),
            ("98.6", "Fahrenheit", "Celsius"), ("1", "acre", "square meters"), ("3", "tablespoons", "ml"),
            ("500", "yen", "pounds"), ("72", "inches", "feet"), ("2.5", "liters", "pints"),
            ("90", "minutes", "hours"), ("15", "stone", "kilograms")]])),
    Family("symmetric_comparisons", "paraphrase", "order", "dev", _cycle(
        [("{a} vs {b}: which is {adj}?", "{b} vs {a}: which is {adj}?"),
         ("Which is {adj}, {a} or {b}?", "Which is {adj}: {a} or {b}?"),
         ("What is the difference between {a} and {b}?", "What's the difference between {a} and {b}?")],
        [{"a": a, "b": b, "adj": adj} for a, b, adj in [
            ("Python", "Java", "faster"), ("tea", "coffee", "healthier"), ("Rome", "Florence", "cheaper to visit"),
            ("SSD", "HDD", "more reliable"), ("React", "Vue", "easier to learn"),
            ("rice", "quinoa", "better for protein"),
            ("Linux", "Windows", "more secure"), ("a Roth IRA", "a 401k", "better"), ("cats", "dogs", "easier to keep"),
            ("Kindle", "Kobo", "cheaper"), ("running", "cycling", "better for the knees"),
            ("PostgreSQL", "MySQL", "faster")]])),
    Family("negation_paraphrase_v2", "paraphrase", "negation", "dev", _cycle(
        [("What should I not eat before {e}?", "What shouldn't I eat before {e}?"),
         ("Why is my {d} not {adj}?", "Why isn't my {d} {adj}?"),
         ("Is it true that {claim} is not {adj2}?", "Is it true that {claim} isn't {adj2}?")],
        [{"e": e, "d": d, "adj": a, "claim": c, "adj2": a2} for e, (d, a), (c, a2) in zip(
            ["a colonoscopy", "a run", "bed", "a blood test", "a flight", "an exam", "swimming", "a date",
             "yoga", "a gym session", "a presentation", "a long drive"],
            [("bread", "rising"), ("phone", "charging"), ("lawn", "growing"), ("fridge", "cooling"), ("AC", "working"),
             ("sourdough", "sour"), ("laptop", "charging"), ("basil", "growing"), ("oven", "heating"),
             ("Wi-Fi", "working"), ("dough", "rising"), ("printer", "printing")],
            [("MSG", "harmful"), ("coffee", "dehydrating"), ("a tomato", "a vegetable"), ("Pluto", "a planet"),
             ("glass", "a liquid"), ("a peanut", "a nut"), ("sugar", "addictive"), ("chess", "a sport"),
             ("a whale", "a fish"), ("gold", "magnetic"), ("Greenland", "a continent"), ("a banana", "a berry")])])),
    Family("numbers_written_v2", "paraphrase", "numbers", "dev", _cycle(
        [("Is a {n}-hour fast safe?", "Is a {n} hour fast safe?"),
         ("How long should I cook a {w} kg turkey?", "How long do I cook a {w} kg turkey?"),
         ("Is it OK to drink {word} coffees a day?", "Is it OK to drink {num} coffees a day?")],
        [{"n": n, "w": w, "word": word, "num": num} for n, w, (word, num) in zip(
            ["16", "24", "36", "48", "72", "12", "18", "20", "14", "60", "96", "30"],
            ["5", "7", "4.5", "6", "8", "3", "9", "5.5", "10", "6.5", "4", "7.5"],
            [("two", "2"), ("three", "3"), ("four", "4"), ("five", "5"), ("six", "6"), ("one", "1")] * 2)])),

    Family("negation_v2", "near_miss", "negation", "dev", _cycle(
        [("Should I tip in {country}?", "Should I not tip in {country}?"),
         ("Why do {animal} {behaviour}?", "Why don't {animal} {behaviour}?"),
         ("Are {item} allowed on planes?", "Are {item} not allowed on planes?"),
         ("Can you {act} without {tool}?", "Can you {act} with {tool}?")],
        [{"country": c, "animal": a, "behaviour": b, "item": i, "act": act, "tool": t}
         for c, (a, b), i, (act, t) in zip(
            ["Japan", "France", "the US", "Italy", "China", "Germany", "Australia", "Mexico", "Egypt", "Iceland"],
            [("cats", "purr"), ("dogs", "eat grass"), ("birds", "sing at dawn"), ("fish", "sleep"),
             ("penguins", "fly"), ("snakes", "blink"), ("cows", "lie down before rain"), ("owls", "hoot at night"),
             ("bees", "sting"), ("horses", "sleep standing up")],
            ["power banks", "lighters", "knitting needles", "protein powder", "e-cigarettes", "aerosol deodorants",
             "snow globes", "camping stoves", "nail scissors", "breast milk"],
            [("bake bread", "an oven"), ("boil eggs", "water"), ("jump-start a car", "cables"),
             ("open a wine bottle", "a corkscrew"), ("whip cream", "a mixer"), ("make yogurt", "a starter"),
             ("unlock an iPhone", "Face ID"), ("cut glass", "a glass cutter"), ("dye hair", "bleach"),
             ("make pizza", "yeast")])], rounds=2)),
    Family("antonym_v2", "near_miss", "antonym", "dev", _cycle(
        [("How do I mute {app}?", "How do I unmute {app}?"),
         ("How do I connect my {dev} to {target}?", "How do I disconnect my {dev} from {target}?"),
         ("Why is my {dev} so hot?", "Why is my {dev} so cold?"),
         ("How do I encrypt a folder on {os}?", "How do I decrypt a folder on {os}?"),
         ("Is the price of {asset} going up?", "Is the price of {asset} going down?"),
         ("How do I make the text bigger in {app}?", "How do I make the text smaller in {app}?"),
         ("What are the advantages of {topic}?", "What are the disadvantages of {topic}?"),
         ("How do I accept a meeting invite in {app}?", "How do I decline a meeting invite in {app}?"),
         ("What is the fastest way to {goal}?", "What is the slowest way to {goal}?"),
         ("Which {things} are the heaviest?", "Which {things} are the lightest?")],
        [{"app": a, "dev": d, "target": t, "os": o, "asset": s, "topic": tp, "goal": g, "things": th}
         for a, d, t, o, s, tp, g, th in zip(
            ["Zoom", "Teams", "Discord", "Google Meet", "Slack", "WebEx", "Skype", "FaceTime"],
            ["laptop", "phone", "headphones", "PS5", "smartwatch", "tablet", "Kindle", "printer"],
            ["the TV", "my car", "Wi-Fi", "a projector", "a hotspot", "my Mac", "a speaker", "the router"],
            ["Windows", "macOS", "Linux", "Android", "iOS", "ChromeOS", "Ubuntu", "Windows 11"],
            ["gold", "oil", "Bitcoin", "copper", "lumber", "eggs", "natural gas", "silver"],
            ["remote work", "nuclear power", "electric cars", "homeschooling", "microservices", "renting",
             "solar panels", "a gap year"],
            ["lose weight", "learn French", "pay off debt", "build muscle", "get to the airport",
             "cool down a room", "thaw chicken", "charge a phone"],
            ["planets", "dog breeds", "metals", "birds", "laptops", "bikes", "bowling balls", "penguins"])],
        rounds=3)),
    Family("operands_v2", "near_miss", "operands", "dev", _cycle(
        [("How long is the drive from {c1} to {c2}?", "How long is the drive from {c2} to {c1}?"),
         ("Is {a} a multiple of {b}?", "Is {b} a multiple of {a}?"),
         ("What is {a} minus {b}?", "What is {b} minus {a}?"),
         ("Is {p1} more expensive than {p2}?", "Is {p2} more expensive than {p1}?"),
         ("What is {n} {u1} in {u2}?", "What is {n} {u2} in {u1}?"),
         ("How many {u2} are in {n} {u1}?", "How many {u1} are in {n} {u2}?"),
         ("Translate '{w}' from {l1} into {l2}", "Translate '{w}' from {l2} into {l1}")],
        [{"c1": c1, "c2": c2, "a": a, "b": b, "p1": p1, "p2": p2, "n": n, "u1": u1, "u2": u2, "w": w, "l1": l1,
          "l2": l2} for (c1, c2), (a, b), (p1, p2), (n, u1, u2), (w, l1, l2) in zip(
            [("Denver", "Las Vegas"), ("Milan", "Zurich"), ("Seattle", "Portland"), ("Lyon", "Geneva"),
             ("Austin", "Dallas"), ("Hamburg", "Copenhagen"), ("Perth", "Adelaide")],
            [("12", "48"), ("7", "91"), ("15", "45"), ("9", "81"), ("6", "36"), ("13", "39"), ("8", "64")],
            [("an iPad", "a MacBook Air"), ("London", "Paris"), ("Uber", "a taxi"), ("Spotify", "Apple Music"),
             ("butter", "margarine"), ("a Tesla Model 3", "a BMW 3 Series"), ("Norway", "Sweden")],
            [("50", "dollars", "pesos"), ("3", "cups", "grams"), ("10", "km", "miles"), ("100", "pounds", "euros"),
             ("5", "ounces", "milliliters"), ("2", "hectares", "acres"), ("30", "knots", "km/h")],
            [("good night", "Spanish", "English"), ("cheers", "English", "German"), ("see you soon", "French", "Dutch"),
             ("thank you", "Japanese", "English"), ("happy birthday", "Italian", "Polish"),
             ("excuse me", "English", "Korean"), ("good luck", "Portuguese", "English")])], rounds=3)),
    Family("numbers_v2", "near_miss", "numbers", "dev", _cycle(
        [("Top {n} {things} of all time", "Top {m} {things} of all time"),
         ("Is {t} degrees Celsius a fever?", "Is {t2} degrees Celsius a fever?"),
         ("Best {gadget} under ${p}", "Best {gadget} under ${p2}"),
         ("Plan a {d}-day trip to {city}", "Plan a {d2}-day trip to {city}"),
         ("How many calories are in {e} eggs?", "How many calories are in {e2} eggs?")],
        [{"n": n, "m": m, "things": th, "t": t, "t2": t2, "gadget": g, "p": p, "p2": p2, "d": d, "d2": d2,
          "city": c, "e": e, "e2": e2} for (n, m), th, (t, t2), g, (p, p2), (d, d2), c, (e, e2) in zip(
            [("10", "5"), ("5", "20"), ("3", "10"), ("20", "50"), ("10", "100"), ("7", "8")],
            ["movies", "albums", "novels", "video games", "board games", "TV shows"],
            [("37.5", "38.5"), ("38", "39"), ("37.2", "37.8"), ("39.5", "40"), ("36.9", "37.9"), ("38.2", "38.9")],
            ["laptop", "headphones", "running shoes", "phone", "espresso machine", "monitor"],
            [("500", "1000"), ("100", "200"), ("150", "80"), ("300", "600"), ("250", "700"), ("200", "300")],
            [("3", "5"), ("7", "10"), ("2", "4"), ("5", "14"), ("4", "6"), ("10", "3")],
            ["Rome", "Tokyo", "Lisbon", "Iceland", "New York", "Vietnam"],
            [("two", "three"), ("2", "4"), ("three", "six"), ("one", "two"), ("four", "five"), ("6", "12")])],
        rounds=2)),
]

HELD_OUT = [
    Family("imperative_and_question", "paraphrase", "wording", "held_out", _cycle(
        [("Give me a recipe for {dish}.", "Can you give me a recipe for {dish}?"),
         ("Recommend a good {genre} book.", "Can you recommend a good {genre} book?"),
         ("Summarize the plot of {work}.", "Please summarize the plot of {work}.")],
        [{"dish": d, "genre": g, "work": w} for d, g, w in zip(
            ["banana bread", "chicken curry", "vegan chili", "lemon tart", "shakshuka", "ramen", "falafel",
             "pad thai", "risotto", "apple crumble", "gazpacho", "beef stew"],
            ["science fiction", "history", "mystery", "fantasy", "economics", "philosophy", "poetry", "horror",
             "biography", "travel", "romance", "psychology"],
            ["Macbeth", "The Great Gatsby", "Moby Dick", "1984", "Dune", "The Odyssey", "Jane Eyre",
             "Don Quixote", "Frankenstein", "Dracula", "Beloved", "Ulysses"])])),
    Family("fronted_conditions", "paraphrase", "order", "held_out", _cycle(
        [("During {season}, what is the weather like in {city}?",
          "What is the weather like in {city} during {season}?"),
         ("On a {diet} diet, can I eat {food}?", "Can I eat {food} on a {diet} diet?"),
         ("As a beginner, how should I start {hobby}?", "How should I start {hobby} as a beginner?")],
        [{"season": se, "city": c, "diet": d, "food": f, "hobby": h} for se, c, d, f, h in zip(
            ["winter", "summer", "spring", "autumn"] * 3,
            ["Lisbon", "Kyoto", "Nairobi", "Quebec", "Hanoi", "Vienna", "Lima", "Athens", "Oslo", "Cairo", "Bali",
             "Havana"],
            ["keto", "low-FODMAP", "vegan", "paleo", "Mediterranean", "low-sodium", "gluten-free", "DASH", "keto",
             "vegan", "paleo", "low-carb"],
            ["hummus", "onions", "honey", "rice", "cheese", "bread", "oats", "bananas", "carrots", "pasta",
             "peanut butter", "corn"],
            ["climbing", "chess", "woodworking", "pottery", "running", "photography", "guitar", "knitting",
             "sailing", "coding", "gardening", "painting"])])),
    Family("numbers_same_order", "paraphrase", "numbers", "held_out", _cycle(
        [("What is the square root of {n}?", "What's the square root of {n}?"),
         ("What is {a} divided by {b}?", "What's {a} divided by {b}?"),
         ("Is {p} a prime number?", "Is {p} prime?")],
        [{"n": n, "a": a, "b": b, "p": p} for n, (a, b), p in zip(
            ["144", "2", "50", "1024", "3", "200", "81", "10", "625", "7", "90", "1000"],
            [("144", "12"), ("7", "2"), ("1000", "8"), ("99", "9"), ("355", "113"), ("22", "7"), ("64", "4"),
             ("1", "3"), ("81", "27"), ("250", "5"), ("17", "4"), ("360", "12")],
            ["97", "91", "221", "101", "57", "113", "87", "127", "143", "199", "51", "263"])])),
    Family("directions_kept", "paraphrase", "order", "held_out", _cycle(
        [("How do I get from {a} to {b} by train?", "What's the best way to get from {a} to {b} by train?"),
         ("Is {x} taller than {y}?", "Is {x} taller than {y} or not?"),
         ("Send {n} dollars to {person}", "Please send {n} dollars to {person}")],
        [{"a": a, "b": b, "x": x, "y": y, "n": n, "person": pe} for (a, b), (x, y), n, pe in zip(
            [("Paris", "Brussels"), ("Vienna", "Budapest"), ("Milan", "Venice"), ("Hamburg", "Berlin"),
             ("Kyoto", "Tokyo"), ("Boston", "New York"), ("Seville", "Madrid"), ("Glasgow", "London"),
             ("Lyon", "Marseille"), ("Zurich", "Munich"), ("Prague", "Dresden"), ("Oslo", "Bergen")],
            [("the Eiffel Tower", "the Shard"), ("Big Ben", "the Leaning Tower of Pisa"),
             ("Mount Fuji", "Mont Blanc"), ("a giraffe", "an elephant"), ("LeBron James", "Michael Jordan"),
             ("the Burj Khalifa", "the Empire State Building"), ("K2", "Kangchenjunga"), ("a moose", "a horse"),
             ("Taylor Swift", "Selena Gomez"), ("the Statue of Liberty", "Christ the Redeemer"),
             ("a redwood", "a sequoia"), ("Tom Cruise", "Nicole Kidman")],
            ["20", "50", "35", "100", "15", "75", "40", "60", "25", "10", "80", "45"],
            ["Anna", "my brother", "Jorge", "my landlord", "Priya", "Tom", "my mom", "Lee", "Sam", "Kim",
             "my sister", "Omar"])])),
    Family("negation_kept", "paraphrase", "negation", "held_out", _cycle(
        [("What happens if I don't {x}?", "What happens if I do not {x}?"),
         ("Why won't my {d} {v}?", "Why will my {d} not {v}?"),
         ("What if I never {x}?", "What happens if I never {x}?")],
        [{"x": x, "d": d, "v": v} for x, (d, v) in zip(
            ["pay a parking ticket", "file taxes", "vote", "update my phone", "sleep for a night", "renew my visa",
             "go to jury duty", "change my oil", "drink water for a day", "brush my teeth", "return a library book",
             "rotate my tires"],
            [("car", "start"), ("Mac", "boot"), ("iPhone", "update"), ("Xbox", "turn on"), ("bread", "rise"),
             ("printer", "print"), ("app", "open"), ("garage door", "close"), ("toilet", "flush"),
             ("Wi-Fi", "connect"), ("jar", "open"), ("sink", "drain")])])),

    Family("negation_round3", "near_miss", "negation", "held_out", _cycle(
        [("Do I have to {x}?", "Do I not have to {x}?"),
         ("Was {p} ever {state}?", "Was {p} never {state}?"),
         ("List {things} that are {adj}.", "List {things} that are not {adj}."),
         ("Why does everyone {v}?", "Why does nobody {v}?")],
        [{"x": x, "p": p, "state": st, "things": th, "adj": a, "v": v}
         for x, (p, st), (th, a), v in zip(
            ["pay tax on savings", "register my bike", "declare cash at customs", "wear a helmet on an e-bike",
             "tip at a buffet", "renew my passport", "vaccinate my cat", "get a visa for Turkey"],
            [("Einstein", "married"), ("Pluto", "a planet"), ("Shakespeare", "in Italy"), ("Tesla", "profitable"),
             ("Mozart", "rich"), ("Van Gogh", "famous"), ("Nokia", "the biggest phone maker"), ("Kodak", "bankrupt")],
            [("fruits", "high in sugar"), ("dog breeds", "hypoallergenic"), ("countries", "in the EU"),
             ("plants", "safe for cats"), ("cheeses", "pasteurized"), ("fish", "high in mercury"),
             ("programming languages", "typed"), ("houseplants", "toxic")],
            ["hate Mondays", "love pizza", "use Excel", "watch the Super Bowl", "like the Beatles",
             "drink coffee", "fear sharks", "own a smartphone"])], rounds=3)),
    Family("antonyms_round3", "near_miss", "antonym", "held_out", _cycle(
        [("How do I sign in to {svc}?", "How do I sign out of {svc}?"),
         ("What causes high {m}?", "What causes low {m}?"),
         ("Is it safe to swim after {act}?", "Is it safe to swim before {act}?"),
         ("How do I deposit a check at {bank}?", "How do I withdraw a check at {bank}?"),
         ("How do I speed up a video in {app}?", "How do I slow down a video in {app}?"),
         ("How do I tighten a {part}?", "How do I loosen a {part}?"),
         ("How do I freeze {food}?", "How do I thaw {food}?"),
         ("Which is the largest {thing} in the world?", "Which is the smallest {thing} in the world?")],
        [{"svc": s, "m": m, "act": a, "bank": b, "app": ap, "part": pt, "food": f, "thing": t}
         for s, m, a, b, ap, pt, f, t in zip(
            ["Netflix", "Gmail", "Steam", "Facebook", "Outlook", "Twitch", "PayPal", "Canva"],
            ["blood pressure", "cholesterol", "blood sugar", "heart rate", "iron", "platelets", "potassium",
             "white blood cells"],
            ["eating", "drinking", "a workout", "taking melatonin", "a big meal", "a massage", "sunbathing",
             "a tattoo"],
            ["Chase", "Wells Fargo", "Barclays", "HSBC", "an ATM", "Santander", "Citibank", "a credit union"],
            ["iMovie", "Premiere", "CapCut", "VLC", "YouTube", "DaVinci Resolve", "TikTok", "Final Cut"],
            ["bike chain", "faucet", "lug nut", "drum head", "guitar string", "watch strap", "hinge screw",
             "belt"],
            ["bread", "soup", "bananas", "chicken breasts", "shrimp", "cookie dough", "spinach", "rice"],
            ["desert", "ocean", "country", "lake", "island", "animal", "bird", "city"])], rounds=3)),
    Family("operands_round3", "near_miss", "operands", "held_out", _cycle(
        [("Did {t1} beat {t2} in the {y} final?", "Did {t2} beat {t1} in the {y} final?"),
         ("Is {a} divisible by {b}?", "Is {b} divisible by {a}?"),
         ("What percentage of {a} is {b}?", "What percentage of {b} is {a}?"),
         ("How does {x} affect {z}?", "How does {z} affect {x}?"),
         ("What is the ratio of {a} to {b}?", "What is the ratio of {b} to {a}?"),
         ("Is {s1} a subset of {s2}?", "Is {s2} a subset of {s1}?")],
        [{"t1": t1, "t2": t2, "y": y, "a": a, "b": b, "x": x, "z": z, "s1": s1, "s2": s2}
         for (t1, t2, y), (a, b), (x, z), (s1, s2) in zip(
            [("Spain", "England", "2023"), ("Argentina", "France", "2022"), ("Italy", "England", "2021"),
             ("Germany", "Brazil", "2014"), ("Nadal", "Federer", "2008"), ("Djokovic", "Murray", "2012")],
            [("96", "12"), ("7", "63"), ("250", "40"), ("18", "108"), ("45", "900"), ("13", "169")],
            [("sleep", "mood"), ("inflation", "interest rates"), ("stress", "digestion"), ("diet", "acne"),
             ("exercise", "sleep"), ("caffeine", "anxiety")],
            [("the integers", "the rationals"), ("squares", "rectangles"), ("the primes", "the odd numbers"),
             ("JSON", "YAML"), ("mammals", "vertebrates"), ("TCP", "IP")])], rounds=3)),
    Family("numbers_round3", "near_miss", "numbers", "held_out", _cycle(
        [("What was the population of {c} in {y1}?", "What was the population of {c} in {y2}?"),
         ("Is {p1} a prime number?", "Is {p2} a prime number?"),
         ("Remind me in {m1} minutes", "Remind me in {m2} minutes"),
         ("Monthly payment on a {n1}-year mortgage at {r}%", "Monthly payment on a {n2}-year mortgage at {r}%")],
        [{"c": c, "y1": y1, "y2": y2, "p1": p1, "p2": p2, "m1": m1, "m2": m2, "n1": n1, "n2": n2, "r": r}
         for c, (y1, y2), (p1, p2), (m1, m2), (n1, n2), r in zip(
            ["Japan", "Nigeria", "Brazil", "India", "Germany", "Egypt"],
            [("1990", "2020"), ("1960", "2000"), ("2010", "2015"), ("1950", "1951"), ("1989", "1999"),
             ("2000", "2023")],
            [("97", "99"), ("91", "97"), ("221", "223"), ("101", "111"), ("57", "59"), ("127", "129")],
            [("5", "15"), ("10", "20"), ("30", "3"), ("45", "40"), ("2", "20"), ("90", "9")],
            [("30", "15"), ("15", "20"), ("25", "30"), ("10", "30"), ("20", "25"), ("30", "40")],
            ["6.5", "4", "7.25", "5", "3.9", "6"])], rounds=2)),
]

FAMILIES = DEV + SEEN_IN_ROUND_1 + SEEN_IN_ROUND_2 + HELD_OUT


# -- the measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    family: Family
    cached: str
    new: str
    similarity: float
    reason: str | None                 # the guard's verdict on the pair (None: may serve)
    served: dict[tuple[float, bool], bool]   # (threshold, guard on) -> the cache served the cached answer


def query(tenant: str, prompt: str) -> CacheQuery:
    return CacheQuery.build(tenant=tenant, scope="any", messages=[("user", prompt)], params={"max_tokens": 64})


def answer(text: str) -> CachedAnswer:
    return CachedAnswer(text=text, finish_reason="stop", prompt_tokens=8, completion_tokens=8, tier="cloud",
                        backend="cloud", model="m", created=time.time())


def score(families: list[Family], embed: Callable[[str], np.ndarray], thresholds: list[float],
          tmp: Path) -> tuple[list[Scored], dict[str, int]]:
    """Each pair through real AnswerCaches (guard off and on): the cached question stored in
    its own partition, the new one looked up at every threshold."""
    caches = {on: AnswerCache(tmp / f"guard-{on}.sqlite3", ttl_s=86_400, max_entries=100_000, threshold=0.95,
                              guard=meaning_change if on else None) for on in (False, True)}
    out = []
    try:
        for n, (family, (cached, new)) in enumerate((f, p) for f in families for p in f.pairs):
            a, b = embed(cached), embed(new)
            for cache in caches.values():
                cache.store(query(f"pair{n}", cached), answer(cached), vector=a)
            served = {(t, on): cache.lookup(query(f"pair{n}", new), vector=b, threshold=t) is not None
                      for t in thresholds for on, cache in caches.items()}
            out.append(Scored(family, cached, new, float(a @ b), meaning_change(cached, new), served))
        return out, dict(caches[True].refused)
    finally:
        for cache in caches.values():
            cache.close()


def rates(rows: list[Scored], threshold: float, guard: bool) -> dict[str, float | int]:
    para = [r for r in rows if r.family.kind == "paraphrase"]
    near = [r for r in rows if r.family.kind == "near_miss"]
    para_hits = sum(r.served[(threshold, guard)] for r in para)
    false_hits = sum(r.served[(threshold, guard)] for r in near)
    return {"false_hit_rate": round(false_hits / len(near), 4) if near else None,
            "paraphrase_hit_rate": round(para_hits / len(para), 4) if para else None,
            "false_hits": false_hits, "paraphrase_hits": para_hits}


def summary(rows: list[Scored], threshold: float) -> dict[str, object]:
    """guard_off / guard_on at `threshold`, how many pairs reach it at all, and the ratio
    of paraphrases still served with the guard on."""
    off, on = rates(rows, threshold, False), rates(rows, threshold, True)
    kept = (round(on["paraphrase_hits"] / off["paraphrase_hits"], 4)  # type: ignore[operator]
            if off["paraphrase_hits"] else None)
    return {"pairs": len(rows),
            "paraphrases": sum(r.family.kind == "paraphrase" for r in rows),
            "near_misses": sum(r.family.kind == "near_miss" for r in rows),
            "reach_threshold": {k: sum(r.similarity >= threshold for r in rows if r.family.kind == k)
                                for k in ("paraphrase", "near_miss")},
            "guard_off": off, "guard_on": {**on, "paraphrase_hits_kept": kept}}


def section(rows: list[Scored], threshold: float, thresholds: list[float]) -> dict[str, object]:
    return {**summary(rows, threshold),
            "thresholds": {f"{t:.2f}": summary(rows, t) for t in thresholds},
            # The guard's verdicts whatever the similarity: how it sorts every pair.
            "guard_alone": {
                "near_misses_refused": sum(r.reason is not None for r in rows if r.family.kind == "near_miss"),
                "paraphrases_passed": sum(r.reason is None for r in rows if r.family.kind == "paraphrase")}}


def families_table(rows: list[Scored], threshold: float) -> dict[str, object]:
    table: dict[str, dict[str, object]] = {}
    for r in rows:
        f = r.family
        e = table.setdefault(f.name, {"split": f.split, "kind": f.kind, "category": f.category, "pairs": 0,
                                      "reach_threshold": 0, "served_guard_off": 0, "served_guard_on": 0,
                                      "guard_verdicts": Counter()})
        e["pairs"] += 1  # type: ignore[operator]
        e["reach_threshold"] += r.similarity >= threshold  # type: ignore[operator]
        e["served_guard_off"] += r.served[(threshold, False)]  # type: ignore[operator]
        e["served_guard_on"] += r.served[(threshold, True)]  # type: ignore[operator]
        e["guard_verdicts"][r.reason or "pass"] += 1  # type: ignore[index]
    for e in table.values():
        e["guard_verdicts"] = dict(e["guard_verdicts"])  # type: ignore[call-overload]
    return table


def mistakes(rows: list[Scored], threshold: float) -> dict[str, list[dict[str, object]]]:
    """With the guard on at `threshold`: near misses still served, paraphrases the guard refused."""
    def show(r: Scored) -> dict[str, object]:
        return {"family": r.family.name, "cached": r.cached, "new": r.new, "similarity": round(r.similarity, 3),
                "guard": r.reason}
    return {"false_hits": [show(r) for r in rows if r.family.kind == "near_miss" and r.served[(threshold, True)]],
            "refused_paraphrases": [show(r) for r in rows if r.family.kind == "paraphrase"
                                    and r.served[(threshold, False)] and not r.served[(threshold, True)]]}


def guard_timing(families: list[Family]) -> dict[str, float]:
    """Microseconds per verdict on pairs the guard has not read before (its reading of a
    text is memoized; the embedding-side cost of a lookup is far larger anyway)."""
    times = []
    for f in families:
        for cached, new in f.pairs:
            t = time.perf_counter()
            meaning_change(cached, new)
            times.append((time.perf_counter() - t) * 1e6)
    return {"p50_us": round(pct(times, 0.5), 1), "p99_us": round(pct(times, 0.99), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("all", "dev", "held_out"), default="all",
                    help="which families to score (tune on dev only; the held_out section is reported with 'all')")
    ap.add_argument("--threshold", type=float, default=CacheSettings().threshold, help="the configured threshold")
    ap.add_argument("--thresholds", default="0.88,0.90,0.92", help="other thresholds to report, comma-separated")
    ap.add_argument("--mistakes", action="store_true", help="list the guard's mistakes at --threshold")
    args = ap.parse_args()
    thresholds = sorted({args.threshold, *(float(t) for t in args.thresholds.split(",") if t)})
    families = [f for f in FAMILIES if args.split in ("all", f.split)]

    from edge.catalog import default_models_dir
    from edge.router.classifier import SentenceEncoder

    timing = guard_timing(families)
    encoder = SentenceEncoder.from_models_dir(default_models_dir())
    with tempfile.TemporaryDirectory() as tmp:
        rows, refused = score(families, encoder.embed, thresholds, Path(tmp))

    out: dict[str, object] = {"benchmark": "cache_guard", "split": args.split, "threshold": args.threshold,
                              **section(rows, args.threshold, thresholds)}
    for split in ("dev", "held_out"):
        part = [r for r in rows if r.family.split == split]
        if part and args.split == "all":
            out[split] = section(part, args.threshold, thresholds)
    out.update({"families": families_table(rows, args.threshold), "cache_refused": refused, "guard_time": timing})
    if args.mistakes:
        out["mistakes"] = mistakes(rows, args.threshold)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
