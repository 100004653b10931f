"""Byte-exact handling of recorded lines: the Kafka key, and rewriting only the `ts` value."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from streams.contract.times import MAX_TS_MS, format_ts, parse_ts

__all__ = ["LineInfo", "inspect_line", "retime_line", "ts_spans"]

_WS = " \t\n\r"
_decoder = json.JSONDecoder()
# The C string scanner that json itself uses; typeshed does not declare it.
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class LineInfo:
    """What replay needs from one line: its key and its event time, if it has them."""

    __slots__ = ("key", "obj", "ts_ms")

    def __init__(self, key: bytes | None, ts_ms: int | None, obj: dict[str, object] | None):
        self.key = key
        self.ts_ms = ts_ms
        self.obj = obj


def inspect_line(line: bytes) -> LineInfo:
    """Key = session_id when the line is a JSON object with a string session_id; ts if valid."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return LineInfo(None, None, None)
    if not isinstance(obj, dict):
        return LineInfo(None, None, None)
    sid = obj.get("session_id")
    key = sid.encode("utf-8", "surrogatepass") if isinstance(sid, str) else None
    ts_ms = None
    if "ts" in obj:
        try:
            ts_ms = parse_ts(obj["ts"])
        except ValueError:
            ts_ms = None
    return LineInfo(key, ts_ms, obj)


_WS_RUN = re.compile(r"[ \t\n\r]+")


def _ws(text: str, i: int) -> int:
    """Index of the first non-whitespace character at or after i."""
    m = _WS_RUN.match(text, i)
    return m.end() if m else i


def ts_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of every top-level "ts" value of a JSON object text (empty if not one).

    Walks the object's members with the standard library's own scanner, so nested objects and
    strings that merely contain "ts" are never touched.
    """
    spans: list[tuple[int, int]] = []
    ws = _ws
    i = ws(text, 0)
    if text[i : i + 1] != "{":
        return []
    i = ws(text, i + 1)
    if text[i : i + 1] == "}":
        return []
    try:
        while True:
            if text[i] != '"':
                return []
            key, i = _scanstring(text, i + 1)
            if text[i] != ":":
                i = ws(text, i)
                if text[i] != ":":
                    return []
            i += 1
            if text[i] in _WS:
                i = ws(text, i)
            _, end = _decoder.raw_decode(text, i)
            if key == "ts":
                spans.append((i, end))
                # Fast exit: no later "ts" token and no \u escape that could spell one.
                if "\\u" not in text and text.find('"ts"', end) < 0:
                    return spans if ws(text, end) < len(text) else []
            i = end
            if text[i] in _WS:
                i = ws(text, i)
            if text[i] == "}":
                break
            if text[i] != ",":
                return []
            i += 1
            if text[i] in _WS:
                i = ws(text, i)
    except (ValueError, IndexError, RecursionError):
        return []
    return spans


def retime_line(line: bytes, shift: Callable[[int], int]) -> bytes:
    """The line with each top-level ts value replaced by shift(its epoch ms); all else verbatim.

    An ISO string stays an ISO string (UTC, milliseconds, Z) and an integer stays an integer;
    a ts that is missing or invalid leaves the line untouched, byte for byte.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return line
    spans = ts_spans(text)
    if not spans:
        return line
    out: list[bytes] = []
    pos = 0  # in characters of text
    for start, end in spans:
        raw = text[start:end]
        try:
            value = json.loads(raw)
            ms = parse_ts(value)
        except ValueError:
            continue
        new_ms = min(max(shift(ms), 0), MAX_TS_MS)
        new = str(new_ms) if isinstance(value, int) else f'"{format_ts(new_ms)}"'
        out.append(text[pos:start].encode("utf-8"))
        out.append(new.encode("ascii"))
        pos = end
    if not out:
        return line
    out.append(text[pos:].encode("utf-8"))
    return b"".join(out)
