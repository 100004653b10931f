"""`storepulse carts --abandoned`: the abandoned carts of a range, for reminders and retargeting."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from storepulse.cli.argtypes import instant_s
from streams.settings import Settings

__all__ = ["register"]

_MAX_LIMIT = 1_000


def _min_value(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"expected an amount like 50 or 19.99, got {text!r}"
        ) from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"expected an amount of at least 0, got {text}")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected 1 to {_MAX_LIMIT}, got {value}")
    return value


def _cursor(text: str) -> str:
    from streams.query.carts import decode_cursor

    try:
        decode_cursor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def render(page: dict[str, Any]) -> str:
    """A readable table of a page of carts."""
    head = f"{'abandoned at':<25} {'session':<24} {'customer':<20} {'value':>12}  recovered at"
    lines = [head]
    for c in page["carts"]:
        value = "mixed" if c["value"] is None else f"{c['value']} {c['currency'] or ''}".strip()
        lines.append(
            f"{c['abandoned_at']:<25} {c['session_id'][:24]:<24} "
            f"{(c['customer'] or '-')[:20]:<20} {value:>12}  {c['recovered_at'] or '-'}"
        )
    if page["next"]:
        lines.append(f"more: --cursor {page['next']}")
    return "\n".join(lines)


async def _carts(args: argparse.Namespace, settings: Settings) -> int:
    from streams.query.carts import CartQuery, abandoned_carts
    from streams.store.carts import CartStore
    from streams.store.client import connect

    client = connect(settings)
    try:
        query = CartQuery(
            args.from_, args.to, args.min_value, args.customer_only, args.limit, args.cursor
        )
        page = await abandoned_carts(CartStore(client, settings), settings, query)
    finally:
        await client.aclose()
    if args.json:
        json.dump(page, sys.stdout, indent=2)
        print()
    else:
        print(render(page))
    return 0


def _cmd_carts(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_carts(args, settings))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    carts = sub.add_parser(
        "carts",
        help="list the abandoned carts of a range (reminders, retargeting)",
        description=(
            "Reads Redis and lists the abandoned carts whose end (the session's last event + "
            "STOREPULSE_SESSION_TIMEOUT_SECONDS) is in [FROM, TO), newest end first, ties by "
            "session id: the customer, the segment, the value at risk, the items held and, "
            "once the customer ordered within STOREPULSE_RECOVERY_WINDOW_SECONDS, when. A cart "
            "is listed until its partition's watermark passes its end + the recovery window "
            "(docs/semantics.md, 'Sessions and carts'). Pass the page's next back as --cursor."
        ),
    )
    carts.add_argument(
        "--abandoned", action="store_true", required=True, help="the abandoned carts (required)"
    )
    carts.add_argument(
        "--from", dest="from_", type=instant_s, required=True, help="ISO 8601 with zone, or ms"
    )
    carts.add_argument("--to", type=instant_s, required=True, help="exclusive, like --from")
    carts.add_argument(
        "--min-value", type=_min_value, help="only carts worth at least this, in their currency"
    )
    carts.add_argument("--customer-only", action="store_true", help="only carts with a customer")
    carts.add_argument(
        "--limit", type=_limit, default=100, help=f"carts per page (default 100, 1..{_MAX_LIMIT})"
    )
    carts.add_argument("--cursor", type=_cursor, help="the next of the previous page")
    carts.add_argument("--json", action="store_true", help="JSON output (docs/semantics.md)")
    carts.set_defaults(handler=_cmd_carts)
