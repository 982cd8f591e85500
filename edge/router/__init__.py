"""The routing decision: signals compute numbers, one policy turns them into a decision with reasons."""

from edge.router.policy import Decision, decide, weigh
from edge.router.signals import Signals, Thresholds
from edge.types import Reason

__all__ = ["Decision", "Reason", "Signals", "Thresholds", "decide", "weigh"]
