"""A fleet of edge boxes on NATS JetStream: best effort, never on the request path."""

from edge.fleet.budget import FleetBudget
from edge.fleet.link import FleetLink
from edge.fleet.member import FleetMember

__all__ = ["FleetBudget", "FleetLink", "FleetMember"]
