"""What each provider and model family accepts: one table, read by the adapters and
shown by `edge status` for the configured backends.

Each row names its source. Where the rule comes from an official SDK, it is the
version pinned in pyproject's dev dependencies (the conformance tests run against it);
where it depends on the live service and cannot be checked offline, the source says
"documented" and README's provider section lists it as assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = ["ANTHROPIC_CURRENT_VERSION", "ANTHROPIC_LEGACY_VERSION", "Capabilities", "capabilities"]

# The version anthropic 2.14.0 sends (anthropic/_constants.py). Its Messages API takes
# no sampling parameters: resources/messages/messages.py create() has no temperature,
# top_p or top_k. The legacy version still takes them (temperature 0-1, not with top_p).
ANTHROPIC_CURRENT_VERSION = "2026-10-21"
ANTHROPIC_LEGACY_VERSION = "2023-06-01"


@dataclass(frozen=True)
class Capabilities:
    temperature: tuple[float, float] | None = (0.0, 2.0)  # accepted range; None: not accepted (not sent)
    top_p: bool = True
    temperature_with_top_p: bool = True  # both in one request
    max_stop: int | None = None   # stop sequences the API takes (None: no known limit); edge cuts the rest itself
    prefill: bool = False         # continues a final assistant turn (else edge asks with an instruction)
    thinking: str = "none"        # none | optional (a budget of 0 turns it off) | always (at least min_thinking)
    min_thinking: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""

    def describe(self) -> str:
        """One line for `edge status`."""
        t = "no temperature" if self.temperature is None else f"temperature {self.temperature[0]:g}-{self.temperature[1]:g}"
        parts = [t, ("top_p" if self.temperature_with_top_p else "top_p alone") if self.top_p else "no top_p",
                 f"stop <= {self.max_stop}" if self.max_stop is not None else "stop",
                 "prefill" if self.prefill else "continues by instruction"]
        if self.thinking != "none":
            parts.append(f"thinking {self.thinking}" + (f" (min {self.min_thinking})" if self.min_thinking else ""))
        return ", ".join(parts)


# OpenAI's reasoning models take neither sampling parameters nor stop sequences
# (documented; the SDK types them as optional for every model).
_OPENAI_REASONING = re.compile(r"^(o\d|gpt-5)")
# Gemini thinking models: 2.5 Pro cannot turn thinking off (minimum budget 128);
# Flash and Flash-Lite can (budget 0). Documented, not checkable offline.
_GEMINI_ALWAYS = re.compile(r"^(models/)?gemini-(2\.5-pro|3)")
_GEMINI_OPTIONAL = re.compile(r"^(models/)?gemini-2\.5-flash")


def capabilities(kind: str, model: str, *, official: bool, api_version: str = "") -> Capabilities:
    """The row for a backend: its wire `kind`, `model`, whether `official` (the provider's own
    API, not a compatible server) and, for Anthropic, the API version it speaks."""
    if kind == "openai":
        if not official:
            return Capabilities(prefill=True, source="OpenAI-compatible server: vLLM, llama.cpp and Ollama continue "
                                                     "a final assistant message")
        base = Capabilities(max_stop=4, source="openai 3.57.0 (stop: up to 4 sequences)")
        if _OPENAI_REASONING.match(model):
            return replace(base, temperature=None, top_p=False, max_stop=0,
                           source="documented: reasoning models take no sampling parameters nor stop")
        return base
    if kind == "anthropic":
        if (api_version or ANTHROPIC_CURRENT_VERSION) >= ANTHROPIC_CURRENT_VERSION:
            return Capabilities(temperature=None, top_p=False, prefill=False,
                                source=f"anthropic 2.14.0, API {ANTHROPIC_CURRENT_VERSION}: no sampling parameters; "
                                       "prefill only on some models (400 on the others)")
        return Capabilities(temperature=(0.0, 1.0), temperature_with_top_p=False, prefill=False,
                            source=f"documented for API {ANTHROPIC_LEGACY_VERSION}: temperature 0-1; current models "
                                   "refuse temperature with top_p")
    if kind == "gemini":
        base = Capabilities(max_stop=5, source="google-genai 3.6.1 (documented: up to 5 stop sequences)")
        if _GEMINI_ALWAYS.match(model):
            return replace(base, thinking="always", min_thinking=128)
        if _GEMINI_OPTIONAL.match(model):
            return replace(base, thinking="optional")
        return base
    return Capabilities()
