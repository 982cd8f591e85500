"""The routing decision: signals compute numbers, one policy turns them into a decision with reasons."""

from edge.router.policy import Decision, Reason, decide

__all__ = ["Decision", "Reason", "decide"]
