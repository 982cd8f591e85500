"""Admission: the serving gate and validation, the same for every door.

Tokens and rate limits are checked before this, by edge.security (the gRPC
interceptor, the HTTP handler), since they refuse a caller rather than a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.config import LimitsSettings
from edge.errors import Unavailable
from edge.types import Request
from edge.validation import Draft, validate

__all__ = ["Arrival", "Admission"]


@dataclass(frozen=True)
class Arrival:
    """What a door knows of a request besides its body."""

    request_id: str
    door: str                          # grpc | http
    stream: bool
    time_remaining: float | None = None  # seconds until the caller's deadline; None = none
    tenant: str = ""                   # the authenticated client ("" = everyone on the device)
    peer: str = ""                     # where the call came from (edge.security.client_address): logged


class Admission:
    def __init__(self, limits: LimitsSettings, state: Callable[[], str]) -> None:
        """`state()` is the daemon's: starting | serving | draining."""
        self.limits, self.state = limits, state

    def admit(self, draft: Draft, arrival: Arrival) -> Request:
        """The validated request; Unavailable unless serving, InvalidArgument naming a bad field."""
        state = self.state()
        if state != "serving":
            raise Unavailable(f"edge is {state}; retry shortly")
        return validate(draft, self.limits, request_id=arrival.request_id, time_remaining=arrival.time_remaining,
                        stream=arrival.stream, tenant=arrival.tenant)
