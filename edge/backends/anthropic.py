"""Anthropic Messages API.

Wire: POST {base_url}/v1/messages with `x-api-key` and `anthropic-version`.
System messages go in the top-level `system` field; `max_tokens` is required;
there is no seed. Streams are named SSE events: message_start (input usage),
content_block_delta (text_delta), message_delta (stop_reason, output usage),
message_stop (the terminal event), ping, and `error` (overloaded_error is the
streaming form of HTTP 529). An assistant prefix is sent as a final assistant
turn, which the API continues.
"""

from __future__ import annotations

import json
from typing import Any

from edge.backends.base import GenerationRequest
from edge.backends.remote import RemoteBackend, SSEEvent, StreamState, sampling_fields

__all__ = ["AnthropicBackend"]

API_VERSION = "2023-06-01"

# Error `type` -> the HTTP status Anthropic pairs it with: classifies errors that
# arrive inside a stream, where there is no status line.
_TYPE_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}


def _finish(reason: Any) -> str:
    # end_turn, stop_sequence, refusal, pause_turn... all end the answer as it is.
    return "length" if reason == "max_tokens" else "stop"


def _input_tokens(usage: dict[str, Any]) -> int:
    # Cached prompt tokens are reported apart from input_tokens but are prompt all the same.
    return sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens"))


def _trim(state: StreamState, text: str) -> str:
    if state.trim_leading and text:
        text = text.lstrip()
        state.trim_leading = not text
    return text


class AnthropicBackend(RemoteBackend):
    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _probe_url(self) -> str:
        return f"{self.base_url}/v1/models"

    def _new_state(self, request: GenerationRequest) -> StreamState:
        prefix = request.assistant_prefix
        return StreamState(trim_leading=bool(prefix) and prefix != prefix.rstrip())

    def _request(self, request: GenerationRequest) -> tuple[str, dict[str, str] | None, dict[str, Any]]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [{"role": "assistant" if m.role == "assistant" else "user", "content": m.content}
                    for m in request.messages if m.role != "system"]
        # The API rejects a final assistant turn that ends in whitespace; the client
        # already has that whitespace, so _trim drops the model's copy of it.
        prefix = request.assistant_prefix.rstrip()
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        p = request.params
        body: dict[str, Any] = {"model": self.model, "max_tokens": p.max_tokens, "messages": messages}
        if system:
            body["system"] = system
        body.update(sampling_fields(p, temperature="temperature", top_p="top_p", stop="stop_sequences", seed=None))
        if request.stream:
            body["stream"] = True
        return f"{self.base_url}/v1/messages", None, body

    def _parse_unary(self, state: StreamState, body: Any) -> str:
        text = "".join(block["text"] for block in body["content"] if block.get("type") == "text")
        state.finish_reason = _finish(body.get("stop_reason"))
        usage = body.get("usage") or {}
        state.prompt_tokens, state.completion_tokens = _input_tokens(usage), int(usage.get("output_tokens") or 0)
        return _trim(state, text)

    def _on_event(self, state: StreamState, event: SSEEvent) -> str:
        data = json.loads(event.data)
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            delta = data["delta"]
            return _trim(state, delta.get("text") or "") if delta.get("type") == "text_delta" else ""
        if kind == "message_start":
            usage = data["message"].get("usage") or {}
            state.prompt_tokens = _input_tokens(usage)
            state.completion_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "message_delta":
            if data.get("delta", {}).get("stop_reason"):
                state.finish_reason = _finish(data["delta"]["stop_reason"])
            usage = data.get("usage") or {}
            if usage.get("output_tokens") is not None:  # cumulative for the message
                state.completion_tokens = int(usage["output_tokens"])
            if usage.get("input_tokens") is not None:
                state.prompt_tokens = _input_tokens(usage)
        elif kind == "message_stop":
            state.done = True
        elif kind == "error":
            raise self._event_error(data)
        return ""  # ping, content_block_start/stop, and event types added later

    def _error_detail(self, body: Any, status: int) -> tuple[str, int, float | None]:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return super()._error_detail(body, status)
        etype = str(err.get("type") or "")
        reason = f"{etype}: {err.get('message') or ''}" if etype else str(err.get("message") or "")
        return reason, status or _TYPE_STATUS.get(etype, 0), None
