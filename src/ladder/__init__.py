"""Ladder: a shared network that climbs over national firewalls."""

__version__ = "0.2.0"
