"""Event JSON as producers write it, checked against the contract's fields of each event type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import get_args

from pydantic import BaseModel

from streams.contract.events import (
    AddToCart,
    CheckoutStep,
    EventType,
    Purchase,
    RemoveFromCart,
    Visit,
)

__all__ = ["EVENT_FIELDS", "REQUIRED_FIELDS", "event_line"]

_MODELS: dict[str, type[BaseModel]] = {
    "visit": Visit,
    "add_to_cart": AddToCart,
    "remove_from_cart": RemoveFromCart,
    "checkout_step": CheckoutStep,
    "purchase": Purchase,
}
assert set(_MODELS) == set(get_args(EventType)), "every event type has a model"

# Per type: the fields an event may carry, and those it must.
EVENT_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(model.model_fields) for kind, model in _MODELS.items()
}
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(name for name, info in model.model_fields.items() if info.is_required())
    for kind, model in _MODELS.items()
}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def event_line(fields: Mapping[str, object]) -> str:
    """One event as a compact JSON object, its keys in the given order.

    `fields` must hold a known `type`, every required field of that type and no field the
    contract does not name (ValueError otherwise): a producer cannot drift from the models.
    Values are written as given (ts as ISO text or epoch ms, money as decimal strings).
    """
    kind = fields.get("type")
    if not isinstance(kind, str) or kind not in EVENT_FIELDS:
        raise ValueError(f"unknown event type {kind!r}")
    allowed = EVENT_FIELDS[kind]
    names = fields.keys()
    if not names <= allowed:
        raise ValueError(f"{kind} has no field {', '.join(sorted(names - allowed))}")
    if not REQUIRED_FIELDS[kind] <= names:
        raise ValueError(f"{kind} needs {', '.join(sorted(REQUIRED_FIELDS[kind] - names))}")
    return _dumps(fields)
