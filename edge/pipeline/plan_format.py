"""The plan's wire format, both ways, and the rule that recognises a compound request.

The planner is asked for one JSON object and nothing else:

    {"steps": [{"ask": "What is the capital of France?", "capable": false}, ...]}

`ask` is a self-contained question or instruction; `capable` (optional, false) says a
small model would get it wrong. `parse_plan` is strict: one object with `steps` only,
each step `ask` (non-empty text) and maybe `capable` (a JSON boolean), at least one step
and at most `max_steps`. The one leniency is a Markdown code fence around the object,
which chat models add even when told not to. Any other defect is a `PlanDefect` whose
code says which: `plan_malformed` or `plan_too_long`.

The compound rule (`compound_questions`): the number of questions in a text, counted as
the question marks that end a sentence (after a word, a closing quote or bracket; before
a space, a closing quote or bracket, or the end), outside code; or, for a numbered or
bulleted list of two or more items at least one of which is a question, the number of
items. Two or more make a request compound. Cheap and explicit: "Which is larger, 3 or
5?" is one question; "What is 2+2? And the capital of Peru?" is two; a list of tasks
without a question mark is none. benchmarks/plan_execute.py measures its precision and
recall.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

__all__ = ["PLANNER_PROMPT", "Step", "PlanDefect", "parse_plan", "compound_questions", "step_piece"]

# Short on purpose: the planner's prompt is paid for on every plan.
PLANNER_PROMPT = (
    "Split the user's request into standalone questions or tasks. "
    'JSON only: {"steps":[{"ask":"..."}]}; add "capable":true to a step a small model would get wrong. '
    "At most {max_steps} steps.")

MAX_ASK_CHARS = 2000
_FENCE = re.compile(r"\A```[a-zA-Z]*\n(.*)\n```\Z", re.S)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
_ITEM = re.compile(r"^[ \t]*(?:\(?\d{1,2}[.)]|[-*\u2022])[ \t]+(\S.*)$", re.M)
_QUESTION_END = re.compile(r"[\w)\]\"'\u2019]\?+(?=[\s)\]\"'\u2019]|\Z)")


@dataclass(frozen=True)
class Step:
    """One step of a plan: what to ask, and whether the planner says it needs a capable model."""

    ask: str
    capable: bool = False


class PlanDefect(Exception):
    """The planner's reply is no usable plan; `code` is the fallback's reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class _StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ask: StrictStr = Field(min_length=1, max_length=MAX_ASK_CHARS)
    capable: StrictBool = False


class _PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[_StepModel]


def parse_plan(text: str, max_steps: int) -> list[Step]:
    """The steps of the planner's reply; PlanDefect for anything but a valid plan."""
    body = text.strip()
    if (fenced := _FENCE.match(body)) is not None:
        body = fenced.group(1).strip()
    try:
        raw = json.loads(body)
    except ValueError:
        raise PlanDefect("plan_malformed", f"not JSON: {_clip(text)!r}") from None
    try:
        plan = _PlanModel.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "plan"
        raise PlanDefect("plan_malformed", f"{where}: {first['msg']}") from None
    steps = [Step(s.ask.strip(), s.capable) for s in plan.steps]
    if not steps or any(not s.ask for s in steps):
        raise PlanDefect("plan_malformed", "no steps" if not steps else "a step with nothing to ask")
    if len(steps) > max_steps:
        raise PlanDefect("plan_too_long", f"{len(steps)} steps, the limit is {max_steps} (plan.max_steps)")
    return steps


def compound_questions(text: str) -> int:
    """Questions in `text` by the compound rule (see the module docstring)."""
    text = _CODE.sub(" ", text)
    asked = len(_QUESTION_END.findall(text))
    items = _ITEM.findall(text)
    if len(items) >= 2 and any(_QUESTION_END.search(item) for item in items):
        return max(asked, len(items))  # a list of questions, some put as tasks ("2. Prove that ...")
    return asked


def step_piece(index: int, answer: str) -> str:
    """What the client reads of step `index` (0-based): its number and its answer, one
    line apart from the step before. Joined, the pieces are the plan's whole answer."""
    return ("\n" if index else "") + f"{index + 1}. {answer.strip()}"


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."
