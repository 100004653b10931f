"""The read side's server: /metrics, /api/*, the live board and the alert webhook."""

from streams.exporter.server import Exporter

__all__ = ["Exporter"]
