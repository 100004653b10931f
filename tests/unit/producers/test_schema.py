"""The lines the producers write validate against the committed docs/event.schema.json."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import jsonschema
import pytest

from producers.entries import DUP, INVALID, INVALID_KINDS, LATE, LOST, VALID
from producers.model import TrafficModel
from producers.scenarios import Timeline
from tests.harness import PROJECT_DIR
from tests.unit.producers.conftest import START_MS, config

SCHEMA = json.loads((PROJECT_DIR / "docs" / "event.schema.json").read_text())

# jsonschema checks "format": "date-time" only when the optional rfc3339-validator package is
# installed (it is not here), and would pass any string silently. RFC 3339 section 5.6, written
# out: a date, "T", a time with optional fraction, and a zone (Z or +hh:mm); no naive times.
_RFC3339 = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or _RFC3339.fullmatch(value) is not None


VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=_FORMATS)


def entries(n: int, **overrides: Any) -> list[tuple[int, int, str]]:
    """The first n lines of a seeded model as (kind, invalid kind index, line)."""
    model = TrafficModel(config(**overrides), Timeline(()), 3, START_MS)
    out = []
    for _, _, kind, line, _, _, stage, _ in model:
        if kind == LOST:
            continue  # never written
        assert line is not None
        out.append((kind, stage, line))
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="module")
def purchase() -> dict[str, Any]:
    """The first purchase line of a converting model."""
    lines = entries(200, cvr=0.2, abandonment=0.5, warmup_s=900.0)
    found: dict[str, Any] = next(
        json.loads(line) for _, _, line in lines if '"type":"purchase"' in line
    )
    return found


def errors(obj: object) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(obj)]


def test_the_schema_itself_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_line_the_model_writes_validates() -> None:
    # A B2B-heavy, converting, late, duplicating and noisy mix, with sessions begun 15 min
    # before the start: every type and optional field shows up within 600 lines.
    lines = entries(
        600,
        rate=20.0,
        cvr=0.2,
        abandonment=0.5,
        warmup_s=900.0,
        b2b_share=0.3,
        late_share=0.1,
        duplicate_share=0.05,
        invalid_share=0.1,
    )
    valid = [json.loads(line) for kind, _, line in lines if kind in (VALID, LATE, DUP)]
    assert len(valid) >= 500
    for obj in valid:
        assert errors(obj) == [], obj
    types = Counter(obj["type"] for obj in valid)
    assert set(types) == {
        "visit",
        "add_to_cart",
        "remove_from_cart",
        "checkout_step",
        "purchase",
    }, types
    assert any("account_id" in obj for obj in valid)
    assert any(isinstance(obj.get("revenue"), str) for obj in valid)
    # The invalid lines were drawn too (they are excluded above, and tested below).
    assert sum(kind == INVALID for kind, _, _ in lines) >= 20


def test_the_schema_rejects_the_model_s_invalid_lines() -> None:
    lines = entries(3_000, rate=20.0, invalid_share=0.2)
    invalid = [(INVALID_KINDS[stage], line) for kind, stage, line in lines if kind == INVALID]
    seen = Counter(kind for kind, _ in invalid)
    # Truncated lines are not JSON at all: the worker rejects them as malformed, no schema needed.
    assert set(seen) == set(INVALID_KINDS), seen
    for kind, line in invalid:
        if kind == "truncated":
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
            continue
        assert errors(json.loads(line)), (kind, line)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"ts": "2024-05-01T00:00:00"}, "a naive time"),
        ({"ts": "yesterday"}, "not a date"),
        ({"ts": -1}, "before the epoch"),
        ({"type": "refund"}, "unknown type"),
        ({"event_id": ""}, "empty id"),
        ({"session_id": None}, "null session"),
        ({"revenue": "-1.00"}, "negative money"),
        ({"revenue": "1.00001"}, "5 decimals"),
        ({"currency": "euro"}, "not a currency code"),
    ],
)
def test_the_schema_rejects_a_broken_purchase(
    purchase: dict[str, Any], change: dict[str, object], why: str
) -> None:
    assert errors(purchase) == []
    assert errors(purchase | change), why


def test_a_missing_required_field_is_rejected() -> None:
    visit = json.loads(next(line for _, _, line in entries(1)))
    assert errors(visit) == []
    for name in ("event_id", "session_id", "ts", "type"):
        assert errors({k: v for k, v in visit.items() if k != name}), name
