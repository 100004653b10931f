"""Subcommands whose arguments are defined next to their code, gathered for the CLI."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the worker, KPI, exporter, producer and benchmark subcommands to the parser."""
    # Each package's cli module adds its own subcommands; imports stay light (argparse only).
    for module in ("streams.cli", "streams.exporter_cli", "producers.cli", "storepulse.bench_cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
