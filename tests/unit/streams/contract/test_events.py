"""The event contract: every accepted shape and every rejected one, with its reason."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from streams.contract.events import EventParser, Rejected, event_json_schema, parse_ts

PARSER = EventParser()
BASE = {"event_id": "e1", "session_id": "s1", "ts": "2026-11-22T10:00:00Z"}


def parse(**fields: object):
    return PARSER.parse(json.dumps(BASE | fields).encode())


def reject(raw: bytes) -> Rejected:
    with pytest.raises(Rejected) as info:
        PARSER.parse(raw)
    return info.value


def test_visit_minimal_gets_unknown_segments() -> None:
    ev = parse(type="visit")
    assert (ev.channel, ev.device, ev.country) == ("unknown", "unknown", "UNKNOWN")
    assert ev.ts == 1_795_341_600_000
    assert ev.user_id is None and ev.account_id is None


def test_all_common_fields_and_extras_ignored() -> None:
    ev = parse(
        type="visit",
        page="/p/1",
        user_id="u1",
        account_id="acme",
        channel=" Organic ",
        device="Mobile",
        country="de",
        utm_source="newsletter",
    )
    assert (ev.channel, ev.device, ev.country) == ("organic", "mobile", "DE")
    assert ev.account_id == "acme"
    assert not hasattr(ev, "utm_source")


@pytest.mark.parametrize(
    ("ts", "ms"),
    [
        ("2026-11-22T10:00:00Z", 1_795_341_600_000),
        ("2026-11-22T11:00:00+01:00", 1_795_341_600_000),
        ("2026-11-22T10:00:00.123456Z", 1_795_341_600_123),
        (1_795_341_600_123, 1_795_341_600_123),
        (0, 0),
    ],
)
def test_ts_forms(ts: object, ms: int) -> None:
    assert parse(type="visit", ts=ts).ts == ms


@pytest.mark.parametrize(
    ("ts", "needle"),
    [
        ("2026-11-22T10:00:00", "no time zone"),
        ("yesterday", "not ISO 8601"),
        (1.5e12, "ISO 8601 string or integer"),
        (True, "boolean"),
        (-1, "outside"),
        (10**15, "outside"),
    ],
)
def test_bad_ts_is_schema_with_reason(ts: object, needle: str) -> None:
    rej = reject(json.dumps(BASE | {"type": "visit", "ts": ts}).encode())
    assert rej.reason == "schema"
    assert needle in rej.detail


def test_add_to_cart_money_is_exact_decimal_from_string_or_number() -> None:
    a = parse(type="add_to_cart", sku="X", quantity=2, unit_price="19.99", currency="EUR")
    b = parse(type="add_to_cart", sku="X", quantity=2, unit_price=19.99, currency="EUR")
    assert a.unit_price == b.unit_price == Decimal("19.99")
    assert isinstance(a.unit_price, Decimal)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"unit_price": "-0.01"}, "unit_price"),
        ({"unit_price": "1.00001"}, "unit_price"),
        ({"unit_price": "NaN"}, "unit_price"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"sku": ""}, "sku"),
    ],
)
def test_add_to_cart_rejections(fields: dict[str, object], needle: str) -> None:
    good = {"type": "add_to_cart", "sku": "X", "quantity": 1, "unit_price": "1", "currency": "EUR"}
    rej = reject(json.dumps(BASE | good | fields).encode())
    assert rej.reason == "schema"
    assert needle in rej.detail


def test_checkout_step_uses_configured_steps() -> None:
    assert parse(type="checkout_step", step="payment").step == "payment"
    rej = reject(json.dumps(BASE | {"type": "checkout_step", "step": "gift"}).encode())
    assert "unknown checkout step 'gift'" in rej.detail
    custom = EventParser(["address", "pay"])
    raw = json.dumps(BASE | {"type": "checkout_step", "step": "pay"}).encode()
    assert custom.parse(raw).step == "pay"
    with pytest.raises(Rejected):
        custom.parse(json.dumps(BASE | {"type": "checkout_step", "step": "payment"}).encode())


def test_remove_from_cart() -> None:
    ev = parse(type="remove_from_cart", sku="SKU-1", quantity=2, user_id="u1")
    assert (ev.type, ev.sku, ev.quantity, ev.user_id) == ("remove_from_cart", "SKU-1", 2, "u1")
    good = {"type": "remove_from_cart", "sku": "X", "quantity": 1}
    for bad, needle in (
        ({"quantity": 0}, "quantity"),
        ({"quantity": "1"}, "quantity"),  # strict: a number, as add_to_cart's
        ({"quantity": 1.5}, "quantity"),
        ({"sku": ""}, "sku"),
        ({"quantity": None}, "quantity"),
    ):
        rej = reject(json.dumps(BASE | good | bad).encode())
        assert rej.reason == "schema" and needle in rej.detail, bad


def test_purchase() -> None:
    ev = parse(type="purchase", order_id="o1", revenue="41.13", currency="USD")
    assert (ev.order_id, ev.revenue, ev.currency) == ("o1", Decimal("41.13"), "USD")
    for bad in ({"order_id": ""}, {"revenue": -1}, {"revenue": "1e400"}, {"currency": None}):
        body = BASE | {"type": "purchase", "order_id": "o", "revenue": "1", "currency": "USD"}
        assert reject(json.dumps(body | bad).encode()).reason == "schema"


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1,2]", b'"text"', b"42", b"null", b"\xff\xfe\x00", b'{"a": 1'],
)
def test_not_a_json_object_is_malformed(raw: bytes) -> None:
    assert reject(raw).reason == "malformed"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"type": "refund"}, "refund"),
        ({}, "discriminator"),
        ({"type": "visit", "event_id": ""}, "event_id"),
        ({"type": "visit", "session_id": "   "}, "session_id"),
        ({"type": "visit", "channel": "x" * 65}, "channel"),
    ],
)
def test_schema_rejections_are_readable(body: dict[str, object], needle: str) -> None:
    base = {k: v for k, v in BASE.items() if k not in body or body[k] is not None}
    rej = reject(json.dumps(base | body).encode())
    assert rej.reason == "schema"
    assert needle in rej.detail


def test_oversized_message_is_rejected_before_parsing() -> None:
    raw = json.dumps(BASE | {"type": "visit", "pad": "x" * 70_000}).encode()
    rej = reject(raw)
    assert rej.reason == "schema"
    assert "limit is 65536" in rej.detail


def test_parse_ts_is_exact_in_integer_milliseconds() -> None:
    assert parse_ts("1970-01-01T00:00:00.0019Z") == 1
    assert parse_ts("2000-02-29T23:59:59.999999-00:30") == 951_870_599_999


def test_committed_json_schema_matches_the_models() -> None:
    committed = json.loads(Path("docs/event.schema.json").read_text())
    assert committed == event_json_schema()
    kinds = {v["properties"]["type"]["const"] for v in committed["$defs"].values()}
    assert kinds == {"visit", "add_to_cart", "remove_from_cart", "checkout_step", "purchase"}
