"""Google Gemini API (generateContent).

Wire: POST {base_url}/v1beta/models/{model}:generateContent, or
:streamGenerateContent?alt=sse for streams; the key goes in `x-goog-api-key`,
never in the URL (URLs end up in logs). Roles are "user" and "model"; system
messages go in `systemInstruction`; sampling in `generationConfig`. Each stream
event is a partial GenerateContentResponse; there is no end marker: a stream is
complete when the connection closes after a candidate with a finishReason.
A final `model` turn is not continued: a partial answer is continued by instruction.

Blocked answers (finishReason SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT,
SPII and the image forms) are reported as content_filter. Thinking models bill
their thoughts as output (`thoughtsTokenCount`, counted here as completion tokens)
and spend them from maxOutputTokens, so edge sends a thinking budget: 0 where the
model can turn thinking off (2.5 Flash), the backend's `thinking_budget` or the
model's minimum where it cannot (2.5 Pro, 3), with maxOutputTokens raised by that
budget so the answer keeps the tokens the client asked for. 400 FAILED_PRECONDITION
(the region is not supported, billing is not enabled) is the account's: the
backend leaves rotation.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge.backends.base import GenerationRequest
from edge.backends.remote import ACCOUNT_STATUS, RemoteBackend, SSEEvent, StreamState, sampling_fields
from edge.errors import BackendRejectedRequest, RetryableBackendError

__all__ = ["GeminiBackend"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")  # google.protobuf.Duration in JSON: "7s", "0.5s"
# ErrorInfo reasons that mean the key is wrong, although Gemini sends them with a 400.
_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})


_BLOCKED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                      "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR"})


def _finish(reason: Any) -> str:
    # STOP, OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL... end the answer as it is.
    if reason in _BLOCKED:
        return "content_filter"
    return "length" if reason == "MAX_TOKENS" else "stop"


class GeminiBackend(RemoteBackend):
    kind = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"

    def _auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def _probe_url(self) -> str:
        return f"{self.base_url}/v1beta/models"

    def _request(self, request: GenerationRequest) -> tuple[str, dict[str, str] | None, dict[str, Any]]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        # The API refuses a turn without text; an empty turn says nothing, so it is left out.
        contents = [{"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
                    for m in request.messages if m.role != "system" and m.content.strip()]
        if request.assistant_prefix:
            contents.append({"role": "model", "parts": [{"text": request.assistant_prefix}]})
        p = request.params
        config: dict[str, Any] = {"maxOutputTokens": p.max_tokens,
                                  **sampling_fields(p, self.caps, temperature="temperature", top_p="topP",
                                                    stop="stopSequences", seed="seed")}
        budget = self._thinking()
        if budget is not None:
            config["thinkingConfig"] = {"thinkingBudget": budget}
            config["maxOutputTokens"] = p.max_tokens + budget
        body: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}], "role": "user"}  # as google-genai sends it
        model = self.model.removeprefix("models/")
        method = "streamGenerateContent" if request.stream else "generateContent"
        params = {"alt": "sse"} if request.stream else None
        return f"{self.base_url}/v1beta/models/{model}:{method}", params, body

    def _thinking(self) -> int | None:
        """The thinking budget to send (None: the model does not think, send nothing)."""
        caps = self.caps
        if caps.thinking == "none":
            return None
        wanted = self.thinking_budget if self.thinking_budget is not None else 0
        return max(wanted, caps.min_thinking) if caps.thinking == "always" else wanted

    def _parse_unary(self, state: StreamState, body: Any) -> str:
        text = self._absorb(state, body)
        if not body.get("candidates"):
            raise RetryableBackendError(self._msg("malformed response (no candidates)"))
        state.finish_reason = state.finish_reason or "stop"
        return text

    def _on_event(self, state: StreamState, event: SSEEvent) -> str:
        return self._absorb(state, json.loads(event.data))

    def _absorb(self, state: StreamState, body: Any) -> str:
        """Read one (partial) GenerateContentResponse."""
        if "error" in body:
            raise self._event_error(body)
        usage = body.get("usageMetadata")
        if isinstance(usage, dict):  # each chunk repeats the totals so far
            state.prompt_tokens = int(usage.get("promptTokenCount") or 0)
            # Thoughts are billed as output: budgets must see them.
            state.completion_tokens = int(usage.get("candidatesTokenCount") or 0) + int(
                usage.get("thoughtsTokenCount") or 0)
        candidates = body.get("candidates") or []
        if not candidates:
            block = (body.get("promptFeedback") or {}).get("blockReason")
            if block:  # the prompt itself was refused: the client's to change, no failover
                raise BackendRejectedRequest(self._msg(f"prompt blocked: {block}"))
            return ""
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        # Thought summaries of thinking models are not the answer.
        text = "".join(part.get("text") or "" for part in parts if not part.get("thought"))
        if candidate.get("finishReason"):
            state.finish_reason = _finish(candidate["finishReason"])
            state.eof_ok = True
        return text

    def _error_detail(self, body: Any, status: int) -> tuple[str, int, float | None]:
        if isinstance(body, list) and len(body) == 1:  # streamGenerateContent without alt=sse wraps it
            body = body[0]
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return super()._error_detail(body, status)
        code = err.get("code")
        kind_status = status or (code if isinstance(code, int) else 0)
        retry_after = None
        for detail in err.get("details") or ():
            if not isinstance(detail, dict):
                continue
            dtype = str(detail.get("@type") or "")
            if dtype.endswith("google.rpc.RetryInfo"):
                m = _DURATION.match(str(detail.get("retryDelay") or ""))
                retry_after = float(m.group(1)) if m else None
            elif dtype.endswith("google.rpc.ErrorInfo") and detail.get("reason") in _BAD_KEY_REASONS:
                kind_status = 401
        reason = str(err.get("message") or "")
        if err.get("status"):
            reason = f"{err['status']}: {reason}"
        if err.get("status") == "FAILED_PRECONDITION":  # region not supported, billing not enabled
            return f"account: {reason}", ACCOUNT_STATUS, retry_after
        return reason, kind_status, retry_after
