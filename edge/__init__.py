"""edge: a gRPC daemon that answers chat requests with local GGUF models, and says who served each answer and why.

Importing edge loads no model, opens no socket and reads no network.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

from edge.backends import Backend, Chunk, FakeBackend, GenerationRequest, Message, SamplingParams  # noqa: E402
from edge.client import AsyncClient, Client, build_request  # noqa: E402
from edge.config import Settings, load_settings  # noqa: E402
from edge.errors import (  # noqa: E402
    ConfigError,
    DeadlineExceeded,
    EdgeError,
    InvalidArgument,
    ModelCorrupt,
    ModelError,
    ModelNotFound,
    Overloaded,
    Unavailable,
    UnknownModel,
)

__all__ = [
    "__version__",
    "AsyncClient",
    "Backend",
    "Chunk",
    "Client",
    "ConfigError",
    "DeadlineExceeded",
    "EdgeError",
    "FakeBackend",
    "GenerationRequest",
    "InvalidArgument",
    "Message",
    "ModelCorrupt",
    "ModelError",
    "ModelNotFound",
    "Overloaded",
    "SamplingParams",
    "Settings",
    "Unavailable",
    "UnknownModel",
    "build_request",
    "load_settings",
]
