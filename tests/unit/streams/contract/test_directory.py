"""The directory's files and records: good rows, and each bad one with its line and reason."""

from __future__ import annotations

import pytest

from streams.contract.accounts import DirectoryRow
from streams.contract.directory import (
    DirectoryError,
    decode_row,
    encode_row,
    parse_directory_bytes,
    parse_record,
)


def test_csv_with_and_without_region_and_jsonl() -> None:
    csv = b"account_id,name,tier,sales_rep\nacct-1,One GmbH,gold,rita\nacct-2,,silver,\n\n"
    assert parse_directory_bytes(csv, jsonl=False) == [
        DirectoryRow("acct-1", "One GmbH", "gold", "rita"),
        DirectoryRow("acct-2", None, "silver", None),
    ]
    with_region = b'\xef\xbb\xbfaccount_id,name,tier,sales_rep,region\na,"B, Inc",t,r,EU\n'
    assert parse_directory_bytes(with_region, jsonl=False) == [
        DirectoryRow("a", "B, Inc", "t", "r", "EU")
    ]
    jsonl = (
        b'{"account_id": "a", "tier": "gold"}\n\n{"account_id": "b", "tier": "x", "name": null}\n'
    )
    assert [r.account_id for r in parse_directory_bytes(jsonl, jsonl=True)] == ["a", "b"]
    row = DirectoryRow("a|b", "N\t1", "gold", None, "EU")
    assert decode_row("a|b", encode_row(row)) == row


@pytest.mark.parametrize(
    ("data", "jsonl", "line", "reason"),
    [
        (b"", False, 1, "empty file"),
        (b"id,name,tier,rep\n", False, 1, "the header must be"),
        (b"account_id,name,tier,sales_rep\na,n,t,r\n,n,t,r\n", False, 3, "account_id is missing"),
        (b"account_id,name,tier,sales_rep\na,n,t,r\nb,n,t,r\na,m,t,r\n", False, 4, "on line 2"),
        (b"account_id,name,tier,sales_rep\na,n,,r\n", False, 2, "tier is missing"),
        (b"account_id,name,tier,sales_rep\na,n,t\n", False, 2, "3 fields, expected 4"),
        (b"account_id,name,tier,sales_rep\na," + b"n" * 201 + b",t,r\n", False, 2, "name has 201"),
        (b"account_id,name,tier,sales_rep\n" + b"a" * 129 + b",n,t,r\n", False, 2, "account_id"),
        (b"account_id,name,tier,sales_rep\na,\xff,t,r\n", False, 2, "not UTF-8"),
        (b'account_id,name,tier,sales_rep\na,"n,t,r\n', False, 2, "not CSV"),
        (b'{"account_id": "a", "tier": "t"}\n[1]\n', True, 2, "not a JSON object"),
        (b'{"account_id": "a", "tier": "t", "rep": "x"}\n', True, 1, "unknown key 'rep'"),
        (b'{"account_id": 7, "tier": "t"}\n', True, 1, "account_id must be a string"),
        (b'{"account_id": "a", "tier": "t"}\n{"account_id": "a", "tier": "u"}\n', True, 2, "a"),
    ],
)
def test_a_bad_row_names_its_line_and_reason(
    data: bytes, jsonl: bool, line: int, reason: str
) -> None:
    with pytest.raises(DirectoryError) as caught:
        parse_directory_bytes(data, jsonl=jsonl)
    assert caught.value.line == line
    assert reason in caught.value.reason


def test_topic_records() -> None:
    assert parse_record(b'{"account_id": "a", "tier": "gold", "sales_rep": "r"}') == (
        DirectoryRow("a", None, "gold", "r")
    )
    for bad in (None, b"", b"{", b"[]", b'{"tier": "x"}'):
        with pytest.raises(DirectoryError):
            parse_record(bad)
