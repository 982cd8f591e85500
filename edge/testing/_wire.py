"""The providers' wire formats, for edge.testing.providers: each provider's error
bodies, and the JSON or server-sent events of a completion, built from a plan of
the words to send. No sockets here: the server and its faults live in providers.py.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------------- errors

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("service_unavailable_error", "server_is_overloaded", "The server is overloaded, please try again later."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_GEMINI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def _error_body(kind: str, status: int, message: str | None = None, code: Any = ...,
                param: str | None = None) -> dict[str, Any]:
    """The provider's own error body for ``status`` (``code`` is openai's ``error.code``; ... = the default)."""
    if kind == "openai":
        etype, ecode, emsg = _OPENAI_ERRORS.get(
            status, ("invalid_request_error", None, "Invalid request.") if status < 500
            else ("server_error", None, "The server had an error while processing your request."))
        return {"error": {"message": message or emsg, "type": etype, "param": param,
                          "code": ecode if code is ... else code}}
    if kind == "anthropic":
        etype, emsg = _ANTHROPIC_ERRORS.get(
            status, ("invalid_request_error", "Invalid request.") if status < 500
            else ("api_error", "Internal server error"))
        return {"type": "error", "error": {"type": etype, "message": message or emsg},
                "request_id": f"req_{uuid.uuid4().hex[:24]}"}
    estatus, emsg = _GEMINI_ERRORS.get(
        status, ("FAILED_PRECONDITION", "Precondition check failed.") if status < 500
        else ("INTERNAL", "Internal error."))
    if isinstance(code, str):  # gemini: the status name, when not the usual one for `status`
        estatus = code
    return {"error": {"code": status, "message": message or emsg, "status": estatus}}


def _retry_after(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    return str(int(seconds)) if seconds.is_integer() else f"{seconds:.3f}".rstrip("0")


# ---------------------------------------------------------------------------------------------- completions

@dataclass
class _Plan:
    pieces: list[str]  # one per word/event/token; "".join(pieces) is the reply text
    finish: str  # "stop" | "length" | "stop_sequence" | "blocked" | "context"
    stop_sequence: str | None
    prompt_tokens: int
    thoughts: int = 0  # gemini thinking models: tokens thought (billed as output, spent from maxOutputTokens)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)

    def reason(self, kind: str) -> str:
        return {"openai": {"stop": "stop", "length": "length", "stop_sequence": "stop", "blocked": "content_filter",
                           "context": "length"},
                "anthropic": {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence",
                              "blocked": "refusal", "context": "model_context_window_exceeded"},
                "gemini": {"stop": "STOP", "length": "MAX_TOKENS", "stop_sequence": "STOP", "blocked": "SAFETY",
                           "context": "MAX_TOKENS"}}[kind][self.finish]


def _texts(obj: Any) -> list[str]:
    """Every piece of input text in a messages/contents/system structure."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, list):
        return [t for item in obj for t in _texts(item)]
    if isinstance(obj, dict):
        return [t for key in ("text", "content", "parts") if key in obj for t in _texts(obj[key])]
    return []


# Gemini models that think (the names edge.backends.capabilities knows), and how much they
# think when no thinkingConfig says otherwise: enough to eat a small maxOutputTokens whole.
_GEMINI_THINKERS = re.compile(r"^(models/)?gemini-(2\.5|3)")
GEMINI_DEFAULT_THOUGHTS = 64


def _gemini_thoughts(model: str, config: dict) -> int:
    if not _GEMINI_THINKERS.match(model or ""):
        return 0
    budget = (config.get("thinkingConfig") or {}).get("thinkingBudget")
    return GEMINI_DEFAULT_THOUGHTS if not isinstance(budget, int) or budget < 0 else min(budget, 16)


def _plan(kind: str, body: dict, reply: str, model: str = "") -> _Plan:
    thoughts = 0
    if kind == "openai":
        limit = body.get("max_completion_tokens")
        limit = body.get("max_tokens") if limit is None else limit
        stops, inputs = body.get("stop"), _texts(body.get("messages"))
    elif kind == "anthropic":
        limit, stops = body.get("max_tokens"), body.get("stop_sequences")
        inputs = _texts(body.get("system")) + _texts(body.get("messages"))
    else:
        config = body.get("generationConfig") or {}
        limit, stops = config.get("maxOutputTokens"), config.get("stopSequences")
        inputs = _texts(body.get("systemInstruction")) + _texts(body.get("contents"))
        thoughts = _gemini_thoughts(model, config)
        if isinstance(limit, int) and not isinstance(limit, bool):
            thoughts = min(thoughts, limit)
            limit -= thoughts  # thinking is spent from the same budget as the answer
    if isinstance(stops, str):
        stops = [stops]
    end, hit = len(reply), None
    for stop in stops if isinstance(stops, list) else []:
        at = reply.find(stop) if isinstance(stop, str) and stop else -1
        if 0 <= at < end:
            end, hit = at, stop
    pieces = re.findall(r"\s*\S+", reply[:end])
    finish = "stop_sequence" if hit is not None else "stop"
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(pieces):
        pieces, finish, hit = pieces[:limit], "length", None
    return _Plan(pieces, finish, hit, sum(len(t.split()) for t in inputs), thoughts)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# Stream events are (terminal, words, frame): terminal events are what a cut stream never sends.
_Event = tuple[bool, int, bytes]


def _openai_events(plan: _Plan, model: str, body: dict, done: bool = True) -> list[_Event]:
    usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_loopback"}

    def frame(choices: list, **extra: Any) -> bytes:
        return b"data: " + _dumps({**base, "choices": choices, **extra}) + b"\n\n"

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        extra = {"usage": None} if usage_wanted else {}
        return frame([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra)

    events: list[_Event] = [(False, 0, chunk({"role": "assistant", "content": "", "refusal": None}))]
    events += [(False, 1, chunk({"content": piece})) for piece in plan.pieces]
    events.append((True, 0, chunk({}, plan.reason("openai"))))
    if usage_wanted:
        events.append((True, 0, frame([], usage=_openai_usage(plan))))
    if done:  # some compatible servers end the body without it; the SDK accepts that
        events.append((True, 0, b"data: [DONE]\n\n"))
    return events


def _openai_usage(plan: _Plan) -> dict[str, int]:
    return {"prompt_tokens": plan.prompt_tokens, "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens}


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\n".encode() + b"data: " + _dumps({"type": event, **data}) + b"\n\n"


def _anthropic_events(plan: _Plan, model: str) -> list[_Event]:
    message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "content": [],
               "model": model, "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": 1}}
    events: list[_Event] = [
        (False, 0, _sse("message_start", {"message": message})),
        (False, 0, _sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})),
        (False, 0, _sse("ping", {})),
    ]
    events += [(False, 1, _sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}}))
               for p in plan.pieces]
    events += [
        (True, 0, _sse("content_block_stop", {"index": 0})),
        (True, 0, _sse("message_delta", {"delta": {"stop_reason": plan.reason("anthropic"),
                                                   "stop_sequence": plan.stop_sequence},
                                         "usage": {"output_tokens": plan.completion_tokens}})),
        (True, 0, _sse("message_stop", {})),
    ]
    return events


def _gemini_response(plan: _Plan, model: str, text: str, rid: str, final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    usage = {"promptTokenCount": plan.prompt_tokens, "totalTokenCount": plan.prompt_tokens}
    if final:
        candidate["finishReason"] = plan.reason("gemini")
        usage = {"promptTokenCount": plan.prompt_tokens, "candidatesTokenCount": plan.completion_tokens,
                 "totalTokenCount": plan.prompt_tokens + plan.completion_tokens + plan.thoughts}
        if plan.thoughts:
            usage["thoughtsTokenCount"] = plan.thoughts
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": rid}


def _gemini_chunks(plan: _Plan, model: str) -> list[tuple[bool, int, dict]]:
    rid, pieces = uuid.uuid4().hex[:22], plan.pieces or [""]
    return [(i == len(pieces) - 1, 1 if piece else 0,
             _gemini_response(plan, model, piece, rid, final=i == len(pieces) - 1)) for i, piece in enumerate(pieces)]


def _stream_events(kind: str, plan: _Plan, model: str, body: dict, done: bool = True) -> list[_Event]:
    """A completion's stream events in `kind`'s framing (gemini: ?alt=sse)."""
    if kind == "openai":
        return _openai_events(plan, model, body, done)
    if kind == "anthropic":
        return _anthropic_events(plan, model)
    return [(t, w, b"data: " + _dumps(r) + b"\r\n\r\n") for t, w, r in _gemini_chunks(plan, model)]


def _unary_body(kind: str, plan: _Plan, model: str) -> dict[str, Any]:
    """A whole (non-streamed) completion in `kind`'s format."""
    if kind == "openai":
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": plan.text,
                                                                     "refusal": None},
                                             "logprobs": None, "finish_reason": plan.reason("openai")}],
                "usage": _openai_usage(plan), "system_fingerprint": "fp_loopback"}
    if kind == "anthropic":
        return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": plan.text}], "stop_reason": plan.reason("anthropic"),
                "stop_sequence": plan.stop_sequence,
                "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": plan.completion_tokens}}
    return _gemini_response(plan, model, plan.text, uuid.uuid4().hex[:22], final=True)


# ---------------------------------------------------------------------------------------- what each refuses

# What an account problem looks like (status, message, openai code): the service's own words.
ACCOUNT_ERRORS: dict[str, tuple[int, str, Any]] = {
    "openai": (429, "You exceeded your current quota, please check your plan and billing details.",
               "insufficient_quota"),
    "anthropic": (400, "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                       "to upgrade or purchase credits.", ...),
    "gemini": (400, "User location is not supported for the API use.", "FAILED_PRECONDITION"),
}
ANTHROPIC_CURRENT_VERSION = "2026-10-21"  # what anthropic 2.14.0 sends


def _anthropic_refusal(body: dict, version: str, prefill: bool) -> str | None:
    """Why the Messages API refuses `body` at `version` (None: it does not)."""
    sampling = [k for k in ("temperature", "top_p", "top_k") if k in body]
    if sampling and version >= ANTHROPIC_CURRENT_VERSION:
        return f"{sampling[0]}: Extra inputs are not permitted"
    t = body.get("temperature")
    if isinstance(t, (int, float)) and not 0 <= t <= 1:
        return "temperature: Input should be less than or equal to 1"
    if "temperature" in body and "top_p" in body:
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    messages = body.get("messages") or []
    for i, m in enumerate(messages):
        if isinstance(m, dict) and isinstance(m.get("content"), str) and not m["content"]:
            return f"messages.{i}: text content blocks must be non-empty"
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant" and not prefill:
        return ("This model does not support assistant message prefill. The conversation must end with a user "
                "message.")
    return None


def refusal(kind: str, body: dict, *, version: str = "", official: bool = False, prefill: bool = False) -> str | None:
    """Why the provider answers `body` with a 400 (None: it does not): the rules the real
    services hold that the adapters must respect (edge.backends.capabilities)."""
    if kind == "anthropic":
        return _anthropic_refusal(body, version, prefill)
    if kind == "openai":
        stop = body.get("stop")
        if official and isinstance(stop, list) and len(stop) > 4:
            return "'stop': array too long. Expected an array with maximum length 4, but got an array with length " \
                   f"{len(stop)} instead."
        return None
    stops = (body.get("generationConfig") or {}).get("stopSequences")
    if isinstance(stops, list) and len(stops) > 5:
        return "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences are allowed"
    for i, c in enumerate(body.get("contents") or []):
        parts = c.get("parts") if isinstance(c, dict) else None
        if not parts or all(isinstance(p, dict) and not p.get("text") for p in parts):
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
    return None


def without_final_reply(kind: str, body: dict) -> dict:
    """`body` without a final assistant (model) turn: what a model that cannot continue one answers."""
    key, role = ("contents", "model") if kind == "gemini" else ("messages", "assistant")
    turns = body.get(key)
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict) and turns[-1].get("role") == role:
        return {**body, key: turns[:-1]}
    return body


def completion_plan(kind: str, body: dict, reply: Any, model: str, *, prefill: bool, fault: Any) -> _Plan:
    """The words of the answer to `body`: `reply` (a str, or callable(body) -> str) as a server
    that prefills or not sees the request, cut short with the block reason by a `blocked` fault."""
    seen = body if prefill else without_final_reply(kind, body)
    plan = _plan(kind, body, str(reply(seen)) if callable(reply) else reply, model)
    if fault is not None and fault.kind == "blocked":
        plan.pieces, plan.finish, plan.stop_sequence = plan.pieces[:fault.after_events], "blocked", None
    return plan
