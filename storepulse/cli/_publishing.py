"""Options and exit codes shared by the commands that publish to Kafka: generate and replay."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_kafka_options", "fail", "progress_enabled"]


def add_kafka_options(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--compression",
        choices=["gzip", "lz4", "snappy", "zstd", "none"],
        default=None,
        help="Kafka batch compression (default: lz4 when its codec is installed, else gzip)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the final summary as one JSON object on stdout instead of a line of text",
    )
    p.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress line on stderr about once a second (default auto: only on a terminal)",
    )


def fail(command: str, message: str, code: int) -> int:
    print(f"storepulse {command}: {message}", file=sys.stderr)
    return code


def progress_enabled(choice: str) -> bool | None:
    return {"auto": None, "always": True, "never": False}[choice]
