"""The alert stream mini-broker: producer, filter groups and end consumers for Rubin alerts."""

__version__ = "0.1.0"
