"""Customer facts: the customer of an event, and every message that is not a fact refused."""

from __future__ import annotations

import pytest

from streams.contract.events import Rejected
from streams.contract.facts import (
    ActivityFact,
    HistoryFact,
    OrderFact,
    customer_of,
    encode_fact,
    parse_fact,
)


def test_the_customer_is_the_account_else_the_user_else_none() -> None:
    assert customer_of("acct-1", "u-1") == "acct-1"
    assert customer_of(None, "u-1") == "u-1"
    assert customer_of(None, None) == ""


def test_facts_round_trip() -> None:
    facts = [
        ActivityFact("a", "u-1", "s-1", "u-1", "1794999600"),
        OrderFact(
            "o", "acct/1", "o-1", "1795000000123", "199900", "EUR", "email", "mobile", "s-1", ""
        ),
        HistoryFact("h", "u-2", "3", "1700000000000", "1790000000000"),
    ]
    for fact in facts:
        assert parse_fact(encode_fact(fact), fact.customer.encode()) == fact


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"", b"u", "malformed"),
        (b"{", b"u", "malformed"),
        (b'{"a": 1}', b"u", "malformed"),
        (b'["a", "u", 1, "x", "3600"]', b"u", "malformed"),
        (b'["x", "u"]', b"u", "schema"),
        (b'["a", "u", "s", "u"]', b"u", "schema"),
        (b'["a", "u", "s", "u", "3601"]', b"u", "schema"),
        (b'["a", "", "s", "u", "3600"]', b"", "schema"),
        (b'["a", "u", "s", "u", "3600"]', b"v", "key"),
        (b'["a", "u", "s", "u", "3600"]', None, "key"),
        (b'["o", "u", "o", "1", "-5", "EUR", "c", "d", "s", ""]', b"u", "schema"),
        (b'["o", "u", "o", "1", "5", "eur", "c", "d", "s", ""]', b"u", "schema"),
        (b'["h", "u", "0", "1", "2"]', b"u", "schema"),
        (b'["h", "u", "2", "3", "2"]', b"u", "schema"),
        (b'["h", "u", "2", "x", "2"]', b"u", "schema"),
    ],
)
def test_what_is_not_a_fact_is_refused_with_its_reason(value, key, reason) -> None:
    with pytest.raises(Rejected) as caught:
        parse_fact(value, key)
    assert caught.value.reason == reason
    assert caught.value.detail
