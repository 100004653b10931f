"""`storepulse rules`: the Prometheus rules rendered for the configured checkout steps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.settings import Settings

__all__ = ["register"]


def _cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.monitoring.rules import render_rules

    text = render_rules(settings.checkout_steps)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output} for checkout steps {', '.join(settings.checkout_steps)}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser(
        "rules",
        help="print the Prometheus rules for the configured checkout steps",
        description=(
            "Renders prometheus/rules/storepulse.yml with its drop-off rules (one pair per "
            "checkout step) for STOREPULSE_CHECKOUT_STEPS. The committed file is the rendering "
            "for the default steps; `storepulse stack up` renders its own copy. A compose "
            "deployment with other steps writes the file it mounts: "
            "`STOREPULSE_CHECKOUT_STEPS=address,payment storepulse rules --output "
            "prometheus/rules/storepulse.yml`."
        ),
    )
    rules.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write FILE (default: stdout)"
    )
    rules.set_defaults(handler=_cmd_rules)
