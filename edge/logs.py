"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

__all__ = ["configure_logging", "quiet_accept_errors"]

log = logging.getLogger("edge.server")

# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request's URL at INFO, credentials in a base_url included; edge's
    # own lines say which backend answered and how, without the URL.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, every_s: float = 10.0) -> None:
    """asyncio logs each failed accept() (e.g. out of file descriptors) with a traceback,
    thousands of times a second under a flood; keep one line per `every_s` with a count."""
    previous = loop.get_exception_handler()
    state = {"at": 0.0, "suppressed": 0}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" not in message:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - state["at"] < every_s:
            state["suppressed"] += 1
            return
        log.error("accept() failed; new connections are refused until descriptors free up",
                  extra={"error": str(context.get("exception", message)), "suppressed": state["suppressed"]})
        state["at"], state["suppressed"] = now, 0

    loop.set_exception_handler(handler)
