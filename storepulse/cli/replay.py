"""`storepulse replay`: recorded JSONL traffic published verbatim to Kafka, re-timed or not."""

from __future__ import annotations

import argparse
import asyncio
import json

from storepulse.cli._publishing import add_kafka_options, fail, progress_enabled
from storepulse.cli.argtypes import positive
from storepulse.cli.signals import stop_request
from streams.loop import use_event_loop
from streams.settings import Settings

__all__ = ["register"]

_REPLAY = """\
Publishes JSONL files (.gz by suffix, '-' for stdin) to the Kafka topic of the settings, every
line verbatim (the worker is the only validation point: malformed lines are published as they
are), key = session_id when the line is a JSON object with a string session_id, else no key.

By default events are re-timed: the first event's ts becomes now and the others keep their gaps
divided by --speed; only the ts value's bytes change (ISO strings become UTC with milliseconds
and Z, integers stay epoch milliseconds). --keep-time publishes ts untouched.

Every line is acknowledged by the broker before the command exits; Ctrl-C, SIGTERM or SIGHUP
stop reading, flush what was read and report exactly how many lines were acknowledged. Exit
codes: 0 all lines published or stopped by SIGTERM/SIGHUP (the summary says interrupted), 1 a
line failed or the broker/topic/file is unusable, 2 bad arguments, 130 stopped by Ctrl-C.
"""


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    return positive(text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `replay` to the storepulse command."""
    fmt = argparse.RawDescriptionHelpFormatter
    rep = sub.add_parser(
        "replay",
        help="publish recorded JSONL traffic verbatim to Kafka, re-timed or not",
        description=_REPLAY,
        formatter_class=fmt,
    )
    rep.add_argument("files", nargs="+", metavar="FILE", help="JSONL files, .gz allowed, - = stdin")
    rep.add_argument("--keep-time", action="store_true", help="publish ts untouched (no re-timing)")
    rep.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X|max",
        help="play X times faster than recorded, re-timed gaps divided by X (default 1); max: "
        "as fast as the broker takes it, gaps kept",
    )
    rep.add_argument(
        "--rate",
        type=positive,
        metavar="N",
        help="cap at N lines per second (on top of --speed)",
    )
    rep.add_argument(
        "--create-topics",
        action="store_true",
        help="create the events and dead-letter topics when missing (default: error out)",
    )
    add_kafka_options(rep)
    rep.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    use_event_loop(settings.event_loop)
    return asyncio.run(_replay_main(settings, args))


async def _replay_main(settings: Settings, args: argparse.Namespace) -> int:
    from producers.rate import Progress
    from producers.replay import ReplayOptions, replay
    from producers.sinks import SinkError

    opts = ReplayOptions(
        files=args.files,
        keep_time=args.keep_time,
        speed=args.speed,
        rate=args.rate,
        create_topics=args.create_topics,
        compression=args.compression,
    )
    progress = Progress("replay", enabled=progress_enabled(args.progress))
    with stop_request() as stop:
        try:
            report = await replay(settings, opts, progress, stop.event)
        except SinkError as exc:
            return fail("replay", str(exc), 1)
    print(json.dumps(report.as_dict()) if args.json else report.summary(), flush=True)
    return 1 if report.failed or report.read_error else stop.status()
