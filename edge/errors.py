"""One exception tree for the whole daemon.

Errors from dependencies (llama.cpp, httpx, file systems) are converted into
these where they enter; `edge.server` maps them to gRPC status codes in one
place. Nothing matches on exception message text.
"""

from __future__ import annotations

__all__ = [
    "EdgeError",
    "ConfigError",
    "ModelError",
    "ModelNotFound",
    "ModelCorrupt",
    "RequestError",
    "InvalidArgument",
    "UnknownModel",
    "Overloaded",
    "DeadlineExceeded",
    "Unavailable",
    "BackendError",
    "RetryableBackendError",
    "BackendRejectedRequest",
    "BackendMisconfigured",
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
