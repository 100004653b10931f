"""`storepulse rules`: the Prometheus rules rendered for the configured steps and minimum sample."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.settings import Settings

__all__ = ["register"]


def _cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.monitoring.rules import render_rules

    text = render_rules(settings)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(
            f"wrote {args.output} for checkout steps {', '.join(settings.checkout_steps)}, "
            f"minimum sample {settings.min_sample}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser(
        "rules",
        help="print the Prometheus rules for the configured checkout steps and minimum sample",
        description=(
            "Renders the recording and alerting rules from the template shipped in the package "
            "(storepulse/monitoring/storepulse.rules.yml): the drop-off rules, one pair per "
            "checkout step of STOREPULSE_CHECKOUT_STEPS, and every ratio's minimum denominator, "
            "STOREPULSE_MIN_SAMPLE. The committed prometheus/rules/storepulse.yml is the "
            "rendering for the default settings; `storepulse stack up` renders its own copy. A "
            "compose deployment with other settings writes the file it mounts: "
            "`STOREPULSE_CHECKOUT_STEPS=address,payment STOREPULSE_MIN_SAMPLE=50 storepulse "
            "rules --output prometheus/rules/storepulse.yml`."
        ),
    )
    rules.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write FILE (default: stdout)"
    )
    rules.set_defaults(handler=_cmd_rules)
