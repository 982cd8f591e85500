"""Turn a wire request into a GenerationRequest, or say which field is wrong and what the limit is."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from edge.backends.base import GenerationRequest, Message, SamplingParams
from edge.config import LimitsSettings
from edge.errors import InvalidArgument
from edge.v1 import router_pb2 as pb

__all__ = ["ROLES", "ValidRequest", "validate"]

ROLES = ("system", "user", "assistant")
_MAX_STOP_BYTES = 256
_MAX_REQUEST_ID = 128
_MAX_MODEL_NAME = 128


@dataclass(frozen=True)
class ValidRequest:
    generation: GenerationRequest
    model: str
    preference: int
    max_latency_ms: int
    max_cost_usd: float
    # Who asked: the authenticated client's name ("" without a tokens file). Cached
    # answers never cross tenants.
    tenant: str = ""


def _check_messages(messages: list[pb.ChatMessage] | object, limits: LimitsSettings) -> tuple[Message, ...]:
    msgs = list(messages)  # type: ignore[call-overload]
    if not msgs:
        raise InvalidArgument("messages", "must contain at least one message")
    if len(msgs) > limits.max_messages:
        raise InvalidArgument("messages", f"{len(msgs)} messages, the limit is {limits.max_messages}")
    total = 0
    out = []
    for i, m in enumerate(msgs):
        if m.role not in ROLES:
            raise InvalidArgument(f"messages[{i}].role", f"unknown role {m.role[:32]!r}; expected one of {', '.join(ROLES)}")
        total += len(m.content.encode("utf-8"))
        out.append(Message(m.role, m.content))
    if total > limits.max_content_bytes:
        raise InvalidArgument("messages", f"content is {total} bytes, the limit is {limits.max_content_bytes} bytes")
    if total == 0:
        raise InvalidArgument("messages", "all message content is empty; there is nothing to answer")
    if not any(m.role == "user" for m in out):
        raise InvalidArgument("messages", "must contain at least one message with role 'user'")
    return tuple(out)


def _check_params(p: pb.GenerationParams, limits: LimitsSettings) -> SamplingParams:
    if p.max_tokens < 0:
        raise InvalidArgument("params.max_tokens", f"must be positive (0 = default {limits.default_max_tokens}), got {p.max_tokens}")
    if p.max_tokens > limits.max_tokens_cap:
        raise InvalidArgument("params.max_tokens", f"{p.max_tokens} is over the limit of {limits.max_tokens_cap}")
    max_tokens = p.max_tokens or min(limits.default_max_tokens, limits.max_tokens_cap)
    temperature = top_p = None
    if p.HasField("temperature"):
        temperature = p.temperature
        if not math.isfinite(temperature) or not 0.0 <= temperature <= 2.0:
            raise InvalidArgument("params.temperature", f"must be between 0 and 2, got {temperature}")
    if p.HasField("top_p"):
        top_p = p.top_p
        if not math.isfinite(top_p) or not 0.0 < top_p <= 1.0:
            raise InvalidArgument("params.top_p", f"must be greater than 0 and at most 1, got {top_p}")
    if len(p.stop) > limits.max_stop_sequences:
        raise InvalidArgument("params.stop", f"{len(p.stop)} stop sequences, the limit is {limits.max_stop_sequences}")
    for i, s in enumerate(p.stop):
        if not s:
            raise InvalidArgument(f"params.stop[{i}]", "must not be empty")
        if len(s.encode("utf-8")) > _MAX_STOP_BYTES:
            raise InvalidArgument(f"params.stop[{i}]", f"is longer than {_MAX_STOP_BYTES} bytes")
    seed = p.seed if p.HasField("seed") else None
    if seed is not None and not 0 <= seed < 2**32:
        raise InvalidArgument("params.seed", f"must be between 0 and {2**32 - 1}, got {seed}")
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=tuple(p.stop), seed=seed)


def validate(request: pb.GenerateRequest, limits: LimitsSettings, *, request_id: str,
             time_remaining: float | None, stream: bool = True, tenant: str = "") -> ValidRequest:
    """Check every field; the first problem found raises InvalidArgument naming it."""
    if len(request.request_id) > _MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"is longer than {_MAX_REQUEST_ID} characters")
    if len(request.model) > _MAX_MODEL_NAME:
        raise InvalidArgument("model", f"is longer than {_MAX_MODEL_NAME} characters")
    messages = _check_messages(request.messages, limits)
    params = _check_params(request.params, limits)
    routing = request.routing
    if routing.preference not in pb.RoutePreference.values():
        raise InvalidArgument("routing.preference", f"unknown value {routing.preference}")
    if not math.isfinite(routing.max_cost_usd) or routing.max_cost_usd < 0:
        raise InvalidArgument("routing.max_cost_usd", f"must be 0 (no ceiling) or positive, got {routing.max_cost_usd}")
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    generation = GenerationRequest(messages=messages, params=params, request_id=request_id, deadline=deadline,
                                   stream=stream)
    return ValidRequest(generation=generation, model=request.model, preference=routing.preference,
                        max_latency_ms=routing.max_latency_ms, max_cost_usd=routing.max_cost_usd, tenant=tenant)
