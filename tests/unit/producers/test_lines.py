"""Replay's byte-level line handling: keys, and re-timing that rewrites only the ts value."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from producers.lines import inspect_line, retime_line, ts_spans
from streams.contract.events import parse_ts


def plus_hour(ms: int) -> int:
    return ms + 3_600_000


def test_key_is_the_session_id_of_json_objects_only() -> None:
    assert inspect_line(b'{"session_id":"s-1","ts":"2024-05-01T00:00:00Z"}').key == b"s-1"
    assert inspect_line('{"session_id":"café"}'.encode()).key == "café".encode()
    assert inspect_line(b'{"session_id":42}').key is None
    assert inspect_line(b'["session_id","s-1"]').key is None
    assert inspect_line(b'{"session_id":"s-1"').key is None
    assert inspect_line(b"").key is None
    assert inspect_line(b"\xff\xfe").key is None


def test_ts_is_parsed_when_valid() -> None:
    assert inspect_line(b'{"ts":"2024-05-01T00:00:00.250Z"}').ts_ms == 1_714_521_600_250
    assert inspect_line(b'{"ts":1714521600250}').ts_ms == 1_714_521_600_250
    assert inspect_line(b'{"ts":"2024-05-01T00:00:00"}').ts_ms is None  # naive
    assert inspect_line(b'{"ts":true}').ts_ms is None


def test_retime_rewrites_only_the_ts_value() -> None:
    line = b'{ "event_id" : "e1",\t"ts" :  "2024-05-01T02:00:00+02:00" , "x":{"ts":"keep"} }'
    out = retime_line(line, plus_hour)
    assert out == (
        b'{ "event_id" : "e1",\t"ts" :  "2024-05-01T01:00:00.000Z" , "x":{"ts":"keep"} }'
    )
    assert retime_line(b'{"ts":1714521600250,"a":1}', plus_hour) == b'{"ts":1714525200250,"a":1}'


def test_retime_leaves_lines_without_a_usable_ts_untouched() -> None:
    for line in [
        b'{"ts":"2024-05-01T00:00:00"}',
        b'{"a":"\\"ts\\": 1"}',
        b'{"ts":null}',
        b"not json",
        b'[{"ts":1}]',
        b'{"ts":1',
        b"\xff",
        b"",
    ]:
        assert retime_line(line, plus_hour) == line


def test_duplicate_top_level_ts_are_all_rewritten_nested_never() -> None:
    line = b'{"ts":0,"n":{"ts":0},"ts":1000}'
    assert ts_spans(line.decode()) == [(6, 7), (26, 30)]
    assert retime_line(line, lambda ms: ms + 1) == b'{"ts":1,"n":{"ts":0},"ts":1001}'


def test_escaped_key_spelling_is_found() -> None:
    line = b'{"t\\u0073":"2024-05-01T00:00:00Z","p":"\\u00e9"}'
    assert retime_line(line, plus_hour) == b'{"t\\u0073":"2024-05-01T01:00:00.000Z","p":"\\u00e9"}'


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(
    extra=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "ts"), values, max_size=5),
    ts=st.integers(min_value=0, max_value=4_000_000_000_000),
    as_int=st.booleans(),
    indent=st.sampled_from([None, 1]),
    ascii_only=st.booleans(),
)
def test_retime_property(
    extra: dict[str, object], ts: int, as_int: bool, indent: int | None, ascii_only: bool
) -> None:
    from streams.contract.times import format_ts

    obj = {**extra, "ts": ts if as_int else format_ts(ts)}
    line = json.dumps(obj, indent=indent, ensure_ascii=ascii_only).encode()
    out = retime_line(line, plus_hour)
    # Same object except ts, which moved by exactly an hour and kept its type.
    parsed = json.loads(out)
    assert parsed.keys() == obj.keys()
    assert {k: v for k, v in parsed.items() if k != "ts"} == extra
    assert parse_ts(parsed["ts"]) == ts + 3_600_000
    assert isinstance(parsed["ts"], int) == as_int
    # Every byte outside the ts value is unchanged.
    start, end = ts_spans(line.decode())[0]
    head = line.decode()[:start].encode()
    tail = line.decode()[end:].encode()
    assert out.startswith(head)
    assert out.endswith(tail)
