"""OpenAI Chat Completions, and any server that speaks it (vLLM, llama.cpp server,
Ollama) at another base URL.

Wire: POST {base_url}/chat/completions, `Authorization: Bearer KEY` only when a key
is configured. Streams are SSE `data: {chunk}` lines ending with `data: [DONE]`;
`stream_options.include_usage` asks for a last chunk with usage (and no choices).
System messages stay messages. A partial answer to continue is a final assistant
message on compatible servers (vLLM, llama.cpp and Ollama continue it); OpenAI itself
starts a new reply after one, so there it is asked for by instruction
(RemoteBackend._adapt). A stream may end without `data: [DONE]` once a choice has
finished (the SDK accepts that, and some compatible servers do it). A 429 whose code
is `insufficient_quota` is the account's, not a passing limit: the backend leaves
rotation. Everything generic lives in `edge.backends.remote`.
"""

from __future__ import annotations

import json
from typing import Any

from edge.backends.base import GenerationRequest
from edge.backends.remote import ACCOUNT_STATUS, RemoteBackend, SSEEvent, StreamState, sampling_fields

__all__ = ["OpenAIBackend"]


def _finish(reason: Any) -> str:
    # tool_calls, function_call and the like end the answer as it is.
    return {"length": "length", "content_filter": "content_filter"}.get(reason, "stop")


def _usage(state: StreamState, usage: Any) -> None:
    if isinstance(usage, dict):
        state.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        state.completion_tokens = int(usage.get("completion_tokens") or 0)


class OpenAIBackend(RemoteBackend):
    kind = "openai"
    default_base_url = "https://api.openai.com/v1"

    def _auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _probe_url(self) -> str:
        return f"{self.base_url}/models"

    def _request(self, request: GenerationRequest) -> tuple[str, dict[str, str] | None, dict[str, Any]]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.assistant_prefix:
            messages.append({"role": "assistant", "content": request.assistant_prefix})
        p = request.params
        # OpenAI itself has deprecated max_tokens (its reasoning models reject it);
        # compatible servers know max_tokens far more widely than its successor.
        limit_key = "max_completion_tokens" if self.official else "max_tokens"
        body: dict[str, Any] = {"model": self.model, "messages": messages, limit_key: p.max_tokens,
                                **sampling_fields(p, self.caps, temperature="temperature", top_p="top_p", stop="stop",
                                                  seed="seed")}
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return f"{self.base_url}/chat/completions", None, body

    def _parse_unary(self, state: StreamState, body: Any) -> str:
        choice = body["choices"][0]
        message = choice["message"]
        state.finish_reason = _finish(choice.get("finish_reason"))
        _usage(state, body.get("usage"))
        return message.get("content") or message.get("refusal") or ""

    def _on_event(self, state: StreamState, event: SSEEvent) -> str:
        if event.data.strip() == "[DONE]":
            state.done = True
            return ""
        chunk = json.loads(event.data)
        if "error" in chunk:  # vLLM and OpenAI report failures mid-stream this way
            raise self._event_error(chunk)
        _usage(state, chunk.get("usage"))
        text = ""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text += delta.get("content") or delta.get("refusal") or ""
            if choice.get("finish_reason"):
                state.finish_reason = _finish(choice["finish_reason"])
                state.eof_ok = True  # the usage chunk and [DONE] may follow, or not
        return text

    def _error_detail(self, body: Any, status: int) -> tuple[str, int, float | None]:
        reason, kind_status, hint = super()._error_detail(body, status)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("code") == "insufficient_quota":
            return f"account: {reason}", ACCOUNT_STATUS, hint
        return reason, kind_status, hint
