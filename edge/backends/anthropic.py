"""Anthropic Messages API.

Wire: POST {base_url}/v1/messages with `anthropic-version` and the key. The version
is the backend's `api_version`, by default the one anthropic 2.14.0 sends
(2026-10-21), with the key as `Authorization: Bearer`, as that SDK sends it; with
`api_version = "2023-06-01"` (older gateways and proxies) the key goes in
`x-api-key`. The service accepts either header. The current version takes no
sampling parameters (edge sends none); the legacy one takes temperature 0-1, and
not together with top_p (edge keeps the temperature). See edge.backends.capabilities.

System messages go in the top-level `system` field; `max_tokens` is required;
there is no seed. Streams are named SSE events: message_start (input usage),
content_block_delta (text_delta), message_delta (stop_reason, output usage),
message_stop (the terminal event), ping, and `error` (overloaded_error is the
streaming form of HTTP 529). Stop reasons: `refusal` is reported as
content_filter, `max_tokens` and `model_context_window_exceeded` as length. A
partial answer is continued by instruction unless `continuation = "prefill"` (models
without prefill answer a final assistant turn with a 400). Billing and account
errors (`billing_error`, the spend-limit and organization codes in
`error.details.error_code`, and the 400 "credit balance is too low", which carries
no code) take the backend out of rotation.
"""

from __future__ import annotations

import json
from typing import Any

from edge.backends.base import GenerationRequest
from edge.backends.capabilities import ANTHROPIC_CURRENT_VERSION
from edge.backends.remote import ACCOUNT_STATUS, RemoteBackend, SSEEvent, StreamState, sampling_fields

__all__ = ["AnthropicBackend"]

# error.details.error_code values that are the account's, not the request's (anthropic
# 2.14.0, types/shared/*_error.py): whatever status they come with, fail over and stay out.
_ACCOUNT_CODES = frozenset({
    "contract_spend_limit_reached", "enforced_spend_limit_reached", "linked_organization_billing_unavailable",
    "linked_organization_spend_limit_reached", "organization_on_hold", "organization_type_not_supported",
    "parent_organization_required", "user_profile_billing_not_authorized", "user_profile_not_billable",
    "workspace_human_review_disabled", "cmek_key_disabled", "cmek_key_network_blocked",
})

# Error `type` -> the HTTP status Anthropic pairs it with: classifies errors that
# arrive inside a stream, where there is no status line.
_TYPE_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}


def _finish(reason: Any) -> str:
    # end_turn, stop_sequence, pause_turn, tool_use... end the answer as it is.
    return {"max_tokens": "length", "model_context_window_exceeded": "length",
            "refusal": "content_filter"}.get(reason, "stop")


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
        version = self.api_version or ANTHROPIC_CURRENT_VERSION
        headers = {"anthropic-version": version, "content-type": "application/json"}
        if self._api_key:
            if version >= ANTHROPIC_CURRENT_VERSION:
                headers["authorization"] = f"Bearer {self._api_key}"
            else:
                headers["x-api-key"] = self._api_key
        return headers

    def _probe_url(self) -> str:
        return f"{self.base_url}/v1/models"

    def _new_state(self, request: GenerationRequest) -> StreamState:
        prefix = request.assistant_prefix
        return StreamState(trim_leading=bool(prefix) and prefix != prefix.rstrip())

    def _request(self, request: GenerationRequest) -> tuple[str, dict[str, str] | None, dict[str, Any]]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        # The API refuses empty text; an empty turn says nothing, so it is left out.
        messages = [{"role": "assistant" if m.role == "assistant" else "user", "content": m.content}
                    for m in request.messages if m.role != "system" and m.content.strip()]
        # The API rejects a final assistant turn that ends in whitespace; the client
        # already has that whitespace, so _trim drops the model's copy of it.
        prefix = request.assistant_prefix.rstrip()
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        p = request.params
        body: dict[str, Any] = {"model": self.model, "max_tokens": p.max_tokens, "messages": messages}
        if system:
            body["system"] = system
        body.update(sampling_fields(p, self.caps, temperature="temperature", top_p="top_p", stop="stop_sequences",
                                    seed=None))
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
        message = str(err.get("message") or "")
        reason = f"{etype}: {message}" if etype else message
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        code = details.get("error_code")
        if code:
            reason = f"{reason} ({code})"
        # The one rule read from message text: this 400 has no code of its own.
        if etype == "billing_error" or code in _ACCOUNT_CODES or "credit balance" in message.lower():
            return f"account: {reason}", ACCOUNT_STATUS, None
        return reason, status or _TYPE_STATUS.get(etype, 0), None
