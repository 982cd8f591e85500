"""Plan and execute against its baselines, on compound requests made here.

Each request asks 3 to 5 simple questions of kinds the default local model answers well
alone (capitals of big countries, opposites, the language of a country, chemical
symbols, facts about planets, the day after a weekday; `--probe` measures each kind
alone, which is how they were chosen: small sums and colours of things were tried and
left out), in one of four shapes: a numbered list, a bulleted list, questions
in a row, or one sentence naming what to tell ("Tell me the capital of Peru, the day
after Monday and the chemical symbol for tin."). Each request goes three ways through one in-process
engine with the real local model (`edge serve`'s default, the daemon's default
temperature, a fixed seed) and a loopback provider as the strong tier, interleaved:

    all-local    the whole request to the local model (preference local_only)
    all-remote   the whole request to the strong tier (preference cloud_only)
    plan         strategy plan: the strong tier plans, each step is routed by the normal
                 policy (every step here is planned capable = false, so its difficulty
                 is capped at the cascade band: the local model answers and the cascade
                 gate, as shipped, escalates what it doubts; device load off: the machine
                 is shared), the answers are joined

Each request comes three ways (`by_context`): alone ("none"), after a 62-word system
prompt ("system_prompt"), and after that system prompt and two earlier exchanges about
something else ("conversation", 153 words: `modes`, the scenario a plan is for: the
context stays on the device, the planner sees only the last user message). The whole
request carries its context remote; a step carries it on the device only (remote, a
step sends its ask alone).

The strong tier is an emulation that is always right: it answers a question with its
reference sentence ("The capital of Peru is Lima."), a whole compound request with the
reference sentences numbered, and plans by splitting on the generator's structure
(every step capable = false). Its tokens are words, as the loopback provider counts
them; its price is gpt-4o-mini's list price. Cost per request includes the local
model's energy at the [cost] defaults.

Scoring: the share of the parts answered right. An answer that numbers its parts ("1.
... 2. ...") is scored part by part, each part in its own item; one that does not is
scored on its whole text for every part (lenient: a name mentioned anywhere counts),
which only favours all-local, the one mode that does not number reliably. Remote
tokens and cost per request are read from the engine's ledger (the planner call and
every step are rows of their own); latency is the client's, from request to Result.

Also measured: the compound rule of [plan] auto (edge.pipeline.plan_format) on the
generated compound requests (positives) and as many single requests (negatives: the
same questions alone, with a preamble, as a sentence, and a few made to trip it).

    .venv/bin/python benchmarks/plan_execute.py --quick   # 24 requests x 3 contexts
    .venv/bin/python benchmarks/plan_execute.py           # 60 requests x 3 contexts, 4 minutes on 2 idle cores
    .venv/bin/python benchmarks/plan_execute.py --probe   # each kind of question alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edge.pipeline.plan_format import compound_questions  # noqa: E402

SEED = 20261130
PNG = HERE / "results" / "plan_execute.png"
MODES = ("all-local", "all-remote", "plan")
TOKENS_PER_PART = 32  # max_tokens is this times the parts: a plan's step gets max_tokens / steps

# -- the kinds of question: (question, noun phrase for the sentence shape, accepted answers) ------

_CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin", "Spain": "Madrid",
             "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon",
             "Ireland": "Dublin", "Austria": "Vienna", "Norway": "Oslo", "Poland": "Warsaw", "Sweden": "Stockholm",
             "the United Kingdom": "London", "Peru": "Lima", "Cuba": "Havana", "Kenya": "Nairobi",
             "Thailand": "Bangkok"}
_OPPOSITES = {"hot": ["cold"], "big": ["small", "little"], "up": ["down"], "fast": ["slow"], "happy": ["sad"],
              "open": ["closed", "shut"], "early": ["late"], "full": ["empty"], "high": ["low"], "wet": ["dry"],
              "hard": ["soft", "easy"], "long": ["short"], "rich": ["poor"], "strong": ["weak"],
              "thick": ["thin"], "day": ["night"], "in": ["out"], "left": ["right"], "black": ["white"],
              "good": ["bad", "evil"]}
_COLOURS = {"a ripe banana": "yellow", "grass": "green", "snow": "white", "a clear daytime sky": "blue",
            "coal": "black", "a ripe tomato": "red", "milk": "white", "a lemon": "yellow", "a fire truck": "red",
            "a lime": "green", "chocolate": "brown", "a polar bear": "white", "a crow": "black", "blood": "red",
            "a pumpkin": "orange", "a strawberry": "red", "soot": "black", "a cucumber": "green"}
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_SYMBOLS = {"gold": "Au", "silver": "Ag", "iron": "Fe", "oxygen": "O", "hydrogen": "H", "carbon": "C",
            "sodium": "Na", "helium": "He", "nitrogen": "N", "copper": "Cu", "lead": "Pb", "zinc": "Zn",
            "neon": "Ne", "calcium": "Ca", "tin": "Sn", "mercury": "Hg"}
_LANGUAGES = {"Spain": ["Spanish"], "France": ["French"], "Germany": ["German"], "Italy": ["Italian"],
              "Japan": ["Japanese"], "Russia": ["Russian"], "China": ["Chinese", "Mandarin"],
              "Portugal": ["Portuguese"], "Greece": ["Greek"], "Poland": ["Polish"], "Sweden": ["Swedish"],
              "the Netherlands": ["Dutch"], "Turkey": ["Turkish"], "Brazil": ["Portuguese"], "Mexico": ["Spanish"],
              "Egypt": ["Arabic"], "South Korea": ["Korean"], "Norway": ["Norwegian"], "Finland": ["Finnish"],
              "Hungary": ["Hungarian"]}
_PLANETS = [("What is the largest planet in our solar system?", "the largest planet in our solar system", "Jupiter"),
            ("Which planet is known as the Red Planet?", "the planet known as the Red Planet", "Mars"),
            ("Which planet has the famous rings?", "the planet with the famous rings", "Saturn"),
            ("What planet do we live on?", "the planet we live on", "Earth"),
            ("What is the hottest planet?", "the hottest planet", "Venus"),
            ("Which planet is closest to the Sun?", "the planet closest to the Sun", "Mercury")]
_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]


def _ask(kind: str, rng: random.Random) -> tuple[str, str, list[str]]:
    if kind == "sum":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"What is {a} plus {b}?", f"the sum of {a} and {b}", [str(a + b), _NUMBERS[a + b]]
    if kind == "capital":
        country, city = rng.choice(list(_CAPITALS.items()))
        return f"What is the capital of {country}?", f"the capital of {country}", [city]
    if kind == "opposite":
        word, ans = rng.choice(list(_OPPOSITES.items()))
        return f"What is the opposite of '{word}'?", f"the opposite of '{word}'", ans
    if kind == "colour":
        thing, colour = rng.choice(list(_COLOURS.items()))
        return f"What colour is {thing}?", f"the colour of {thing}", [colour]
    if kind == "language":
        country, ans = rng.choice(list(_LANGUAGES.items()))
        return f"What language is spoken in {country}?", f"the language spoken in {country}", ans
    if kind == "planet":
        q, phrase, ans = rng.choice(_PLANETS)
        return q, phrase, [ans]
    if kind == "next_day":
        i = rng.randrange(7)
        return f"What day comes after {_DAYS[i]}?", f"the day after {_DAYS[i]}", [_DAYS[(i + 1) % 7]]
    el, sym = rng.choice(list(_SYMBOLS.items()))
    return f"What is the chemical symbol for {el}?", f"the chemical symbol for {el}", [sym]


# Chosen by --probe (each kind alone through the local model): the kinds it gets right
# most of the time. Small sums and colours of things were tried and left out.
# What comes with the request. The whole request carries it remote; the planner never
# sees it (only the last user message); the steps carry it wherever they run.
SYSTEM = ("You are Hearth, the voice assistant of a family's home hub. Answer briefly, in plain English, "
          "and be friendly and precise. If you do not know something, say so instead of guessing. Do not give "
          "medical, legal or financial advice. The family lives in Leeds and the children are 9 and 12, so keep "
          "every answer suitable for children. Use metric units.")
EARLIER = [("user", "We want to have a picnic in the park on Saturday. What should we pack for four people?"),
           ("assistant", "Pack sandwiches, fruit, a bottle of water for each person, a blanket, napkins and a "
                         "bag for the rubbish. Bring a light jacket each too, in case the wind picks up."),
           ("user", "Good idea. The children also want to play a game there. Any suggestions?"),
           ("assistant", "Frisbee, a treasure hunt with a list of things to find, or tag are all fun in a park. "
                         "A ball and a skipping rope fit in one bag.")]
CONTEXTS: dict[str, list[tuple[str, str]]] = {
    "none": [], "system_prompt": [("system", SYSTEM)], "conversation": [("system", SYSTEM), *EARLIER]}
PRIMARY = "conversation"  # the scenario of a plan: a conversation whose context stays on the device
KINDS = ("capital", "opposite", "language", "symbol", "planet", "next_day")
PROBED = (*KINDS, "sum", "colour")
SHAPES = ("numbered", "bulleted", "in_a_row", "sentence")


def compound(rng: random.Random, shape: str) -> dict[str, Any]:
    """One request of 3-5 parts of different kinds, in `shape`; each part with its
    reference, a sentence as a strong model would put it ("The capital of Peru is Lima.")."""
    kinds = rng.sample(KINDS, rng.randint(3, 5))
    parts = [dict(zip(("ask", "phrase", "accept"), _ask(k, rng)), kind=k) for k in kinds]
    for p in parts:
        p["reference"] = f"{p['phrase'][0].upper()}{p['phrase'][1:]} is {p['accept'][0]}."
    asks = [p["ask"] for p in parts]
    if shape == "numbered":
        prompt = "\n".join(f"{i + 1}. {a}" for i, a in enumerate(asks))
    elif shape == "bulleted":
        prompt = "Please answer:\n" + "\n".join(f"- {a}" for a in asks)
    elif shape == "in_a_row":
        prompt = " ".join(asks)
    else:
        phrases = [p["phrase"] for p in parts]
        prompt = "Tell me " + ", ".join(phrases[:-1]) + " and " + phrases[-1] + "."
    return {"prompt": prompt, "shape": shape, "parts": parts}


def requests(n: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    return [compound(rng, SHAPES[i % len(SHAPES)]) for i in range(n)]


def singles(n: int) -> list[str]:
    """Requests that are not compound, for the rule's precision: questions alone, with a
    preamble, as a sentence, and shapes that could trip it (a question over a list of
    options, a list of tasks, a question quoting a question)."""
    rng = random.Random(SEED + 1)
    tricky = ["Which of these is a fruit?\n1. apple\n2. chair\n3. road", "Sort these words:\n- pear\n- apple\n- fig",
              'What does "why?" mean in French?', "Is 7 prime? I think so.", "Why? I don't get it.",
              "Fix this: `x = a ? b : c`", "Translate 'How are you?' into Spanish."]
    out = tricky[:max(1, min(len(tricky), n // 3))]
    while len(out) < n:
        q, phrase, _ = _ask(rng.choice(KINDS), rng)
        out.append(rng.choice([q, f"I am studying for a quiz. {q}", f"Tell me {phrase}.", q.lower()]))
    return out[:n]


def recognition(positives: list[str], negatives: list[str]) -> dict[str, Any]:
    flagged_pos = sum(compound_questions(p) >= 2 for p in positives)
    flagged_neg = sum(compound_questions(p) >= 2 for p in negatives)
    flagged = flagged_pos + flagged_neg
    return {"positives": len(positives), "negatives": len(negatives), "true_positives": flagged_pos,
            "false_positives": flagged_neg,
            "precision": round(flagged_pos / flagged, 3) if flagged else None,
            "recall": round(flagged_pos / len(positives), 3) if positives else None}


# -- scoring ------------------------------------------------------------------------------------------

def right(text: str, accept: list[str]) -> bool:
    low = text.lower()
    return any(re.search(rf"(?<![a-z0-9]){re.escape(a.lower())}(?![a-z0-9])", low) for a in accept)


def segments(text: str, n: int) -> list[str] | None:
    """Item k of a numbered answer for k = 1..n (in order; "" for an item not found), or
    None when the answer numbers nothing."""
    found: list[tuple[int, int]] = []
    at = 0
    for k in range(1, n + 1):
        m = re.compile(rf"(?m)^\s*{k}[.)]\s*").search(text, at)
        if m is not None:
            found.append((k, m.start()))
            at = m.end()
    if len(found) < 2:
        return None
    starts = dict(found)
    ordered = [s for _, s in found] + [len(text)]
    return [text[starts[k]:ordered[ordered.index(starts[k]) + 1]] if k in starts else "" for k in range(1, n + 1)]


def parts_right(text: str, parts: list[dict[str, Any]]) -> int:
    items = segments(text, len(parts))
    return sum(right(items[i] if items is not None else text, p["accept"]) for i, p in enumerate(parts))


# -- the strong tier: the loopback provider --------------------------------------------------------

def strong_tier(reqs: list[dict[str, Any]]) -> Any:
    """The provider's reply: the plan (split on the generator's structure), the numbered
    references of a whole request, or one question's reference."""
    by_prompt = {r["prompt"]: r for r in reqs}
    by_ask = {p["ask"]: p for r in reqs for p in r["parts"]}

    def reply(body: dict[str, Any]) -> str:
        msgs = body["messages"]
        last = msgs[-1]["content"]
        if msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Split the user's request"):
            r = by_prompt[last]
            return json.dumps({"steps": [{"ask": p["ask"], "capable": False} for p in r["parts"]]})
        if last in by_prompt:
            return "\n".join(f"{i + 1}. {p['reference']}" for i, p in enumerate(by_prompt[last]["parts"]))
        return by_ask[last]["reference"] if last in by_ask else "I do not know."

    return reply


def engine_config(tmp: Path, base_url: str) -> str:
    return f"""
ledger_path = "{tmp / 'ledger.sqlite3'}"
[local]
n_threads = 2
[routing]
strategy = "smart"
device_load = false
profile_on_start = false
[calibration]
shadow_rate = 0
[[cloud]]
name = "cloud"
base_url = "{base_url}"
model = "gpt-4o-mini"
"""


async def _ask_engine(engine: Any, prompt: str, rid: str, mode: str, max_tokens: int,
                      context: list[tuple[str, str]]) -> tuple[Any, float]:
    from edge.pipeline.admission import Arrival
    from edge.types import Preference, Result, Strategy
    from edge.validation import Draft

    messages = [*context, ("user", prompt)]
    draft = Draft(messages=messages, max_tokens=max_tokens, seed=7, request_id=rid,
                  preference={"all-local": Preference.LOCAL_ONLY, "all-remote": Preference.CLOUD_ONLY}.get(
                      mode, Preference.AUTO),
                  strategy=Strategy.PLAN if mode == "plan" else Strategy.DIRECT)
    t0 = time.perf_counter()
    result = None
    async for event in engine.serve(draft, Arrival(rid, "bench", stream=False)):
        if isinstance(event, Result):
            result = event
    return result, (time.perf_counter() - t0) * 1000


async def run_modes(reqs: list[dict[str, Any]], context: list[tuple[str, str]]) -> dict[str, Any]:
    """Every request three ways, the order of the modes rotating; the ledger's rows after."""
    from edge.config import load_settings
    from edge.engine import Engine
    from edge.testing.providers import ProviderServer

    srv = ProviderServer("openai", reply=strong_tier(reqs), model="gpt-4o-mini").start()
    out: dict[str, Any] = {m: {"right": 0, "parts": 0, "latency_ms": [], "texts": []} for m in MODES}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "edge.toml"
            cfg.write_text(engine_config(Path(tmp), srv.base_url))
            engine = Engine(load_settings(cfg, environ={}))
            await engine.start()
            try:
                for i, r in enumerate(reqs):
                    for mode in MODES[i % 3:] + MODES[:i % 3]:
                        result, ms = await _ask_engine(engine, r["prompt"], f"{mode}-{i}", mode,
                                                       TOKENS_PER_PART * len(r["parts"]), context)
                        o = out[mode]
                        o["right"] += parts_right(result.text, r["parts"])
                        o["parts"] += len(r["parts"])
                        o["latency_ms"].append(ms)
                        o["texts"].append({"request": i, "text": result.text,
                                           "trace": [x.code for x in result.trace]})
            finally:
                await engine.close()
            with sqlite3.connect(Path(tmp) / "ledger.sqlite3") as db:
                rows = db.execute("SELECT request_id, tier, prompt_tokens, completion_tokens, cost_usd, reasons "
                                  "FROM requests").fetchall()
    finally:
        srv.stop()
    return {"modes": out, "rows": rows}


def summarise(run: dict[str, Any], n: int) -> list[dict[str, Any]]:
    modes = []
    for mode in MODES:
        o = run["modes"][mode]
        mine = [r for r in run["rows"] if r[0].split("/")[0].rsplit("-", 1)[0] == mode]
        remote = [r for r in mine if r[1] != "local"]
        modes.append({
            "name": mode, "quality": round(o["right"] / o["parts"], 3),
            "remote_tokens": round(sum(r[2] + r[3] for r in remote) / n, 1),
            "cost_usd": round(sum(r[4] for r in mine) / n, 8),
            "latency_ms_p50": round(statistics.median(o["latency_ms"]), 1),
            "remote_calls": round(len(remote) / n, 2),
        })
    return modes


def steps_by_tier(run: dict[str, Any]) -> dict[str, int]:
    tiers: dict[str, int] = {}
    for rid, tier, *_ in run["rows"]:
        if rid.startswith("plan-") and "/" in rid and not rid.endswith("/plan"):
            tiers[tier] = tiers.get(tier, 0) + 1
    return tiers


# -- the probe: each kind alone ------------------------------------------------------------------

async def probe(per_kind: int) -> dict[str, float]:
    """Each kind of question alone through the local model, as a plan's step would ask it."""
    from edge.builders import build_local
    from edge.backends.base import GenerationRequest, Message, SamplingParams
    from edge.catalog import default_models_dir, load_manifest
    from edge.config import ModelEntry, Settings

    manifest = load_manifest()
    backend = build_local(ModelEntry(name=manifest.default), Settings(local={"n_threads": 2}), default_models_dir())
    await backend.start()
    rng = random.Random(SEED + 2)
    shares: dict[str, float] = {}
    try:
        for kind in PROBED:
            ok = 0
            for _ in range(per_kind):
                q, _, accept = _ask(kind, rng)
                req = GenerationRequest(messages=(Message("user", q),),
                                        params=SamplingParams(max_tokens=TOKENS_PER_PART, seed=7))
                text = "".join([c.text async for c in backend.generate(req)])
                ok += right(text, accept)
            shares[kind] = round(ok / per_kind, 3)
    finally:
        await backend.close()
    return shares


# -- the figure ----------------------------------------------------------------------------------

def plot(by_context: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(MODES)
    colours = {"none": "tab:gray", "system_prompt": "tab:cyan", "conversation": "tab:blue"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9), dpi=120)
    width = 0.8 / len(by_context)
    for ax, key, label in zip(axes, ("quality", "remote_tokens", "latency_ms_p50"),
                              ("share of parts answered right", "remote tokens per request",
                               "latency p50 (ms)")):
        for j, (context, block) in enumerate(by_context.items()):
            values = [m[key] for m in block["modes"]]
            xs = [x - 0.4 + width * (j + 0.5) for x in range(len(names))]
            ax.bar(xs, values, width=width * 0.95, color=colours.get(context, "tab:olive"),
                   label=f"{context} ({block['context_words']} words)")
            for x, v in zip(xs, values):
                ax.text(x, v, f"{v:g}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(names)), names)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, title="context with the request", title_fontsize=7)
    fig.suptitle("Compound requests (3-5 simple questions): plan and execute vs all-local and all-remote "
                 "(strong tier emulated, always right)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="24 requests (60 without)")
    ap.add_argument("--probe", action="store_true", help="only: each kind of question alone, 20 of each")
    ap.add_argument("--show", action="store_true", help="print every answer too")
    ap.add_argument("--requests", type=int, default=0, help="this many requests instead")
    args = ap.parse_args()
    if args.probe:
        print(json.dumps({"alone": asyncio.run(probe(20))}, indent=2))
        return
    n = args.requests or (24 if args.quick else 60)
    reqs = requests(n)
    t0 = time.monotonic()
    by_context: dict[str, Any] = {}
    for name, context in CONTEXTS.items():
        run = asyncio.run(run_modes(reqs, context))
        by_context[name] = {"context_words": sum(len(text.split()) for _, text in context),
                            "modes": summarise(run, n), "plan_steps_by_tier": steps_by_tier(run)}
        if args.show:
            by_context[name]["answers"] = {m: run["modes"][m]["texts"] for m in MODES}
    out = {"benchmark": "plan_execute", "requests": n, "parts": sum(len(r["parts"]) for r in reqs),
           "strong_tier": "emulated: answers with the references, plans by the generator's structure",
           "context": PRIMARY, "modes": by_context[PRIMARY]["modes"], "by_context": by_context,
           "compound_rule": recognition([r["prompt"] for r in reqs], singles(n)),
           "seconds": round(time.monotonic() - t0, 1)}
    plot(by_context, PNG)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
