"""Backends: one file per kind. Each needs little more than `generate()` and `close()`."""

from edge.backends.base import Backend, Chunk, GenerationRequest, Message, SamplingParams
from edge.backends.fake import FakeBackend

__all__ = ["Backend", "Chunk", "FakeBackend", "GenerationRequest", "Message", "SamplingParams"]
