"""Invalid lines the generator mixes in: each derived from a valid one, each of a known kind."""

from __future__ import annotations

import json
import random

__all__ = ["INVALID_KINDS", "invalid_line"]

INVALID_KINDS = (
    "truncated",
    "not_object",
    "missing_field",
    "naive_ts",
    "negative_money",
    "unknown_type",
)


def invalid_line(rng: random.Random, line: str) -> tuple[str, str | None, int]:
    """A line the worker must reject, derived from a valid one: (line, key, kind index)."""
    obj = json.loads(line)
    obj["event_id"] = f"{obj['event_id']}~bad"  # never collides with a valid event's id
    which = rng.randrange(len(INVALID_KINDS))
    kind = INVALID_KINDS[which]
    if kind == "negative_money" and obj["type"] not in {"add_to_cart", "purchase"}:
        kind, which = "unknown_type", INVALID_KINDS.index("unknown_type")
    if kind == "truncated":
        text = json.dumps(obj, separators=(",", ":"))
        return text[: rng.randint(1, len(text) - 2)], obj["session_id"], which
    if kind == "not_object":
        return json.dumps([obj["type"], obj["ts"], obj["session_id"]]), obj["session_id"], which
    if kind == "missing_field":
        del obj[rng.choice(("event_id", "session_id", "ts", "type"))]
    elif kind == "naive_ts":
        obj["ts"] = obj["ts"].rstrip("Z")
    elif kind == "negative_money":
        amount = "revenue" if obj["type"] == "purchase" else "unit_price"
        # "-0.00" is a valid amount: a negative one must not be zero.
        obj[amount] = f"-{obj[amount]}" if obj[amount].strip("0.") else "-1.00"
    else:
        obj["type"] = "refund"
    key = obj.get("session_id")
    return json.dumps(obj, separators=(",", ":")), key, which
