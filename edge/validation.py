"""Turn what a door received into the core's Request, or say which field is wrong and what the limit is.

Each door fills a `Draft` from its own wire format (the gRPC door from protobuf, the
HTTP door from OpenAI JSON); `validate` checks it once for both. Field names are
the gRPC contract's (`params.max_tokens`); the HTTP door renames them for its clients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edge.backends.base import GenerationRequest, Message, SamplingParams
from edge.config import LimitsSettings
from edge.errors import InvalidArgument
from edge.types import Preference, Request, Strategy

__all__ = ["ROLES", "Draft", "validate"]

ROLES = ("system", "user", "assistant")
_MAX_STOP_BYTES = 256
_MAX_REQUEST_ID = 128
_MAX_MODEL_NAME = 128


@dataclass(frozen=True)
class Draft:
    """A request as a door received it, before any check. None = the client did not set it."""

    messages: Sequence[tuple[str, str]]
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    seed: int | None = None
    # A value that is not a Preference is one the door could not name: refused, and shown.
    preference: Preference | str = Preference.AUTO
    max_latency_ms: int = 0
    max_cost_usd: float = 0.0
    request_id: str = ""
    model: str = ""
    strategy: Strategy | str = Strategy.AUTO  # like preference: a value that is not a Strategy is refused


def _check_messages(messages: Sequence[tuple[str, str]], limits: LimitsSettings) -> tuple[Message, ...]:
    if not messages:
        raise InvalidArgument("messages", "must contain at least one message")
    if len(messages) > limits.max_messages:
        raise InvalidArgument("messages", f"{len(messages)} messages, the limit is {limits.max_messages}")
    total = 0
    out = []
    for i, (role, content) in enumerate(messages):
        if role not in ROLES:
            raise InvalidArgument(f"messages[{i}].role", f"unknown role {role[:32]!r}; expected one of {', '.join(ROLES)}")
        total += len(content.encode("utf-8"))
        out.append(Message(role, content))
    if total > limits.max_content_bytes:
        raise InvalidArgument("messages", f"content is {total} bytes, the limit is {limits.max_content_bytes} bytes")
    if total == 0:
        raise InvalidArgument("messages", "all message content is empty; there is nothing to answer")
    if not any(m.role == "user" for m in out):
        raise InvalidArgument("messages", "must contain at least one message with role 'user'")
    if not any(m.role == "user" and m.content.strip() for m in out):
        # Anthropic and Gemini refuse a request whose user turns hold no text.
        raise InvalidArgument("messages", "every user message is empty or whitespace; there is nothing to answer")
    return tuple(out)


def _check_sampling(d: Draft) -> None:
    if d.temperature is not None and (not math.isfinite(d.temperature) or not 0.0 <= d.temperature <= 2.0):
        raise InvalidArgument("params.temperature", f"must be between 0 and 2, got {d.temperature}")
    if d.top_p is not None and (not math.isfinite(d.top_p) or not 0.0 < d.top_p <= 1.0):
        raise InvalidArgument("params.top_p", f"must be greater than 0 and at most 1, got {d.top_p}")


def _check_stop(stop: Sequence[str], limits: LimitsSettings) -> tuple[str, ...]:
    if len(stop) > limits.max_stop_sequences:
        raise InvalidArgument("params.stop", f"{len(stop)} stop sequences, the limit is {limits.max_stop_sequences}")
    for i, s in enumerate(stop):
        if not s:
            raise InvalidArgument(f"params.stop[{i}]", "must not be empty")
        if len(s.encode("utf-8")) > _MAX_STOP_BYTES:
            raise InvalidArgument(f"params.stop[{i}]", f"is longer than {_MAX_STOP_BYTES} bytes")
    return tuple(stop)


def _check_params(d: Draft, limits: LimitsSettings) -> SamplingParams:
    if d.max_tokens < 0:
        raise InvalidArgument("params.max_tokens", f"must be positive (0 = default {limits.default_max_tokens}), "
                                                   f"got {d.max_tokens}")
    if d.max_tokens > limits.max_tokens_cap:
        raise InvalidArgument("params.max_tokens", f"{d.max_tokens} is over the limit of {limits.max_tokens_cap}")
    max_tokens = d.max_tokens or min(limits.default_max_tokens, limits.max_tokens_cap)
    _check_sampling(d)
    stop = _check_stop(d.stop, limits)
    if d.seed is not None and not 0 <= d.seed < 2**32:
        raise InvalidArgument("params.seed", f"must be between 0 and {2**32 - 1}, got {d.seed}")
    return SamplingParams(max_tokens=max_tokens, temperature=d.temperature, top_p=d.top_p, stop=stop, seed=d.seed)


def validate(d: Draft, limits: LimitsSettings, *, request_id: str, time_remaining: float | None,
             stream: bool = True, tenant: str = "") -> Request:
    """Check every field; the first problem found raises InvalidArgument naming it."""
    if len(d.request_id) > _MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"is longer than {_MAX_REQUEST_ID} characters")
    if len(d.model) > _MAX_MODEL_NAME:
        raise InvalidArgument("model", f"is longer than {_MAX_MODEL_NAME} characters")
    messages = _check_messages(d.messages, limits)
    params = _check_params(d, limits)
    if not isinstance(d.preference, Preference):
        raise InvalidArgument("routing.preference", f"unknown value {d.preference}")
    if not isinstance(d.strategy, Strategy):
        raise InvalidArgument("routing.strategy", f"unknown value {d.strategy}")
    if not math.isfinite(d.max_cost_usd) or d.max_cost_usd < 0:
        raise InvalidArgument("routing.max_cost_usd", f"must be 0 (no ceiling) or positive, got {d.max_cost_usd}")
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    generation = GenerationRequest(messages=messages, params=params, request_id=request_id, deadline=deadline,
                                   stream=stream, client=tenant)
    return Request(generation=generation, model=d.model, preference=d.preference,
                   max_latency_ms=d.max_latency_ms, max_cost_usd=d.max_cost_usd, tenant=tenant,
                   strategy=d.strategy)
