"""One exception tree for the whole daemon.

Errors from dependencies (llama.cpp, httpx, file systems) are converted into
these where they enter. `wire_error` below is the one table that says what each
error is on every door: its gRPC status code, HTTP status and OpenAI error type.
Nothing matches on exception message text.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EdgeError",
    "ConfigError",
    "ModelError",
    "ModelNotFound",
    "ModelCorrupt",
    "RequestError",
    "InvalidArgument",
    "PayloadTooLarge",
    "BodyTimeout",
    "UnknownModel",
    "Overloaded",
    "DeadlineExceeded",
    "Unavailable",
    "BackendError",
    "RetryableBackendError",
    "BackendRejectedRequest",
    "BackendMisconfigured",
    "WireError",
    "wire_error",
]


class EdgeError(Exception):
    """Base of every error edge raises on purpose."""


class ConfigError(EdgeError):
    """The configuration is invalid; the message names the key and the reason."""


class ModelError(EdgeError):
    """A model file cannot be used."""


class ModelNotFound(ModelError):
    """The model is not installed or its file is missing."""


class ModelCorrupt(ModelError):
    """The model file does not match its expected size or sha256, or is not GGUF."""


class RequestError(EdgeError):
    """The client's request cannot be served as asked."""


class InvalidArgument(RequestError):
    """A request field is out of bounds. `field` names it; the message gives the limit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PayloadTooLarge(InvalidArgument):
    """A request body over the size limit: INVALID_ARGUMENT on gRPC, HTTP 413."""


class BodyTimeout(RequestError):
    """A request body that did not arrive in time (HTTP 408)."""


class UnknownModel(RequestError):
    """The request names a model this daemon does not serve."""


class Overloaded(RequestError):
    """The model's queue is full; retry later or elsewhere."""


class DeadlineExceeded(RequestError):
    """The caller's deadline passed before the answer was complete."""


class Unavailable(EdgeError):
    """The daemon cannot serve now (starting, draining, model failed to load)."""


class BackendError(EdgeError):
    """A backend failed while generating."""


class RetryableBackendError(BackendError):
    """A remote backend failed in a way worth retrying or failing over: connection
    refused/reset, a timeout, 429, 500/502/503/504, a provider "overloaded", a
    malformed or cut-off response. `retry_after` is the provider's Retry-After in
    seconds, when it sent one; `status` the HTTP status, when there was one."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class BackendRejectedRequest(BackendError):
    """The provider said the request itself is bad (HTTP 400): the client's fault,
    returned as INVALID_ARGUMENT with the provider's reason; no failover."""

    def __init__(self, message: str, *, status: int | None = 400) -> None:
        super().__init__(message)
        self.status = status


class BackendMisconfigured(BackendError):
    """The backend's configuration is wrong (HTTP 401/403/404: bad key, no access,
    unknown model or URL). The backend is taken out of rotation until restart."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WireError:
    """What an error is called on each door."""

    grpc_code: str      # a grpc.StatusCode name
    http_status: int
    openai_type: str    # the `type` of an OpenAI error body
    message: str
    field: str | None = None  # InvalidArgument's field, for the door to rename
    internal: bool = False    # a bug, not the client's fault: the door logs it whole, tells little


# One table for every door; order matters (subclasses first).
_TABLE: tuple[tuple[type[EdgeError], str, int, str], ...] = (
    (PayloadTooLarge, "INVALID_ARGUMENT", 413, "invalid_request_error"),
    (InvalidArgument, "INVALID_ARGUMENT", 400, "invalid_request_error"),
    (UnknownModel, "NOT_FOUND", 404, "invalid_request_error"),
    (BodyTimeout, "DEADLINE_EXCEEDED", 408, "timeout_error"),
    (Overloaded, "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
    (DeadlineExceeded, "DEADLINE_EXCEEDED", 504, "timeout_error"),
    (Unavailable, "UNAVAILABLE", 503, "service_unavailable_error"),
    (ConfigError, "FAILED_PRECONDITION", 503, "service_unavailable_error"),
    (ModelError, "FAILED_PRECONDITION", 503, "service_unavailable_error"),
    (BackendError, "UNAVAILABLE", 503, "service_unavailable_error"),
)


def wire_error(exc: BaseException, request_id: str = "") -> WireError:
    """How `exc` reaches a client on any door. Anything that is not an EdgeError is a
    bug: INTERNAL / 500, with a message that gives only the request id."""
    for kind, code, status, openai_type in _TABLE:
        if isinstance(exc, kind):
            field = exc.field if isinstance(exc, InvalidArgument) else None
            return WireError(code, status, openai_type, str(exc), field)
    return WireError("INTERNAL", 500, "server_error", f"internal error (request_id {request_id or '-'})",
                     internal=True)
