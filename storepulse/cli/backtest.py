"""`storepulse backtest`: the alert rules judged by a real Prometheus over simulated days."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from storepulse.cli.argtypes import duration_s, positive
from streams.settings import Settings

__all__ = ["register"]


def _whole(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}")
        return value

    return parse


def _picture(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".svg":
        raise argparse.ArgumentTypeError(f"{text!r}: the picture is SVG, name it FILE.svg")
    return path


def _cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.backtest.picture import svg
    from storepulse.backtest.plan import PlanError
    from storepulse.backtest.report import failures, table
    from storepulse.backtest.run import BacktestOptions, run_backtest

    # The baseline reads 15-minute windows at 15-minute marks, and a 3-minute window needs two
    # samples: steps that divide 15 minutes, up to 90 s.
    if 900 % args.step or not 5 <= args.step <= 90:
        print(
            "storepulse backtest: --step: a divisor of 15 minutes from 5 s to 90 s "
            f"(15s, 30s, 60s, ...), got {args.step}s",
            file=sys.stderr,
        )
        return 2
    options = BacktestOptions(
        days=args.days,
        seed=args.seed,
        incidents=args.incidents,
        rate=args.rate,
        step_s=args.step,
        work_dir=args.work_dir,
    )

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"backtest: {message}", file=sys.stderr, flush=True)

    try:
        result = run_backtest(settings, options, progress)
    except PlanError as exc:
        print(f"storepulse backtest: --incidents/--days: {exc}", file=sys.stderr)
        return 2
    data = result.as_dict()
    if args.picture is not None:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        args.picture.write_text(svg(data, result.timeline, result.options.start_s, result.pages))
        progress(f"picture written to {args.picture}")
    sys.stdout.write(json.dumps(data, indent=1) + "\n" if args.json else table(data))
    return 1 if args.check and failures(data) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backtest = sub.add_parser(
        "backtest",
        help="simulate days of traffic with incidents and judge the alert rules on them",
        description=(
            "Simulates N days of the synthetic storefront (daily and weekly shape, conversion "
            "following the day, low-intent traffic surges, tracking loss) with K incidents "
            "(abandonment spikes, checkout outages, conversion drops) at seeded random times "
            "and strengths; writes the series the exporter would have exported into a private "
            "Prometheus as history (promtool tsdb create-blocks-from openmetrics); has "
            "Prometheus evaluate the rendered rules' recordings over it, level by level, and "
            "every KPI alert's expression at every evaluation step (its query API), applying "
            "each alert's `for:`; and reports per alert: incidents detected, time to detect, "
            "false pages (firing outside every incident) per day, precision and recall. "
            "Needs prometheus and promtool (apt-get install prometheus); a week at the demo's "
            'rate takes a few minutes. Details: docs/metrics.md, "Backtest".'
        ),
    )
    backtest.add_argument("--days", type=positive, default=7.0, help="days to simulate (7)")
    backtest.add_argument("--seed", type=_whole(0), default=1, help="random seed (1)")
    backtest.add_argument(
        "--incidents",
        type=_whole(0),
        default=None,
        metavar="K",
        help="incidents to inject (default: 10 a week, at least 3)",
    )
    backtest.add_argument(
        "--rate", type=positive, default=200.0, help="events per second, as `demo --rate` (200)"
    )
    backtest.add_argument(
        "--step",
        type=duration_s,
        default=30,
        metavar="DURATION",
        help="scrape and evaluation interval (default 30s; compose uses 15s)",
    )
    backtest.add_argument("--json", action="store_true", help="the figures as one JSON object")
    backtest.add_argument(
        "--picture", type=_picture, default=None, metavar="FILE.svg", help="write the timeline"
    )
    backtest.add_argument(
        "--check",
        action="store_true",
        help="exit 1 on a false page or a strong incident (strength >= 0.5, 100 sessions or "
        "more at the affected step) not detected: what CI asks; the table also reports the "
        "median time to detect against its 5-minute target",
    )
    backtest.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep Prometheus' data and logs there (default: a temporary directory)",
    )
    backtest.add_argument("--quiet", action="store_true", help="no progress on stderr")
    backtest.set_defaults(handler=_cmd_backtest)
