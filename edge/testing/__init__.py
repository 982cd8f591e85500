"""Test and benchmark helpers shipped with edge (loopback servers; nothing here is imported by the daemon)."""
