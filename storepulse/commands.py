"""Subcommands whose arguments are defined next to their code, gathered for the CLI."""

from __future__ import annotations

import argparse

from producers import cli as producers_cli
from storepulse import bench_cli
from streams import cli as streams_cli
from streams import exporter_cli

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the worker, KPI, exporter, producer and benchmark subcommands to the parser."""
    # Each module keeps its imports light (argparse only); the work is imported by the handler.
    for module in (streams_cli, exporter_cli, producers_cli, bench_cli):
        module.register(sub)
