"""The account directory's records: CSV and JSONL files and topic messages, checked.

A record is `account_id,name,tier,sales_rep[,region]` (CSV with that header) or a JSON object
with those keys. account_id and tier are required; name, sales_rep and region may be empty
(null). A file is checked whole before anything is written: the first bad row stops it with its
line number and reason (missing or duplicate id, an over-long field, ...).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from streams.contract.accounts import DirectoryRow
from streams.contract.events import MAX_ID_LENGTH

__all__ = [
    "COLUMNS",
    "LIMITS",
    "DirectoryError",
    "decode_row",
    "encode_row",
    "parse_directory_bytes",
    "parse_record",
]

COLUMNS = ("account_id", "name", "tier", "sales_rep", "region")
_REQUIRED = ("account_id", "tier")
# Characters at most: ids like the events' ids; a name fits a company's legal name; tiers and
# regions are short labels (a tier is a Prometheus label value).
LIMITS = {"account_id": MAX_ID_LENGTH, "name": 200, "tier": 64, "sales_rep": 128, "region": 64}


class DirectoryError(ValueError):
    """A bad row of a directory file: its line number (1 = the first line) and what is wrong."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def _row(values: Mapping[str, Any], line: int) -> DirectoryRow:
    clean: dict[str, str | None] = {}
    for name in COLUMNS:
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            raise DirectoryError(line, f"{name} must be a string, got {type(value).__name__}")
        text = (value or "").strip()
        if len(text) > LIMITS[name]:
            raise DirectoryError(line, f"{name} has {len(text)} characters, at most {LIMITS[name]}")
        if not text and name in _REQUIRED:
            raise DirectoryError(line, f"{name} is missing")
        clean[name] = text or None
    return DirectoryRow(
        account_id=str(clean["account_id"]),
        name=clean["name"],
        tier=str(clean["tier"]),
        sales_rep=clean["sales_rep"],
        region=clean["region"],
    )


def parse_record(raw: bytes | None) -> DirectoryRow:
    """One topic message (a JSON object), or DirectoryError(line 1, reason)."""
    try:
        value = json.loads(raw or b"")
    except (ValueError, RecursionError):
        raise DirectoryError(1, "not a JSON object") from None
    return _object(value, 1)


def _object(value: Any, line: int) -> DirectoryRow:
    if not isinstance(value, dict):
        raise DirectoryError(line, "not a JSON object")
    unknown = sorted(set(value) - set(COLUMNS))
    if unknown:
        keys = ", ".join(COLUMNS)
        raise DirectoryError(line, f"unknown key {unknown[0][:40]!r}; the keys are {keys}")
    return _row(value, line)


def _csv_rows(text: str) -> Iterable[tuple[int, DirectoryRow]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DirectoryError(1, f"empty file; the header is {','.join(COLUMNS[:4])}[,region]")
        names = tuple(h.strip().lstrip("\ufeff") for h in header)
        if names not in (COLUMNS[:4], COLUMNS):
            raise DirectoryError(1, f"the header must be {','.join(COLUMNS[:4])}[,region]")
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue  # a blank line
            if len(cells) != len(names):
                raise DirectoryError(line, f"{len(cells)} fields, expected {len(names)}")
            yield line, _row(dict(zip(names, cells, strict=True)), line)
    except csv.Error as exc:
        raise DirectoryError(reader.line_num, f"not CSV: {exc}") from None


def _jsonl_rows(text: str) -> Iterable[tuple[int, DirectoryRow]]:
    for line, chunk in enumerate(text.splitlines(), start=1):
        if not chunk.strip():
            continue
        try:
            value = json.loads(chunk)
        except (ValueError, RecursionError):
            raise DirectoryError(line, "not a JSON object") from None
        yield line, _object(value, line)


def parse_directory_bytes(data: bytes, jsonl: bool) -> list[DirectoryRow]:
    """Every row of a file (CSV, or JSONL when jsonl), or DirectoryError for the first bad one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DirectoryError(data[: exc.start].count(b"\n") + 1, "not UTF-8") from None
    rows: list[DirectoryRow] = []
    where: dict[str, int] = {}
    for line, row in (_jsonl_rows if jsonl else _csv_rows)(text):
        if row.account_id in where:
            raise DirectoryError(
                line, f"account {row.account_id[:64]!r} is on line {where[row.account_id]} too"
            )
        where[row.account_id] = line
        rows.append(row)
    return rows


def encode_row(row: DirectoryRow) -> str:
    """The stored value of a row (the hash field is its account_id): compact JSON."""
    return json.dumps([row.name, row.tier, row.sales_rep, row.region], separators=(",", ":"))


def decode_row(account_id: str, value: bytes | str) -> DirectoryRow:
    name, tier, rep, region = json.loads(value)
    return DirectoryRow(account_id, name, tier, rep, region)
