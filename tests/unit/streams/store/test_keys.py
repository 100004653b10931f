"""The key and field grammar: the Lua script spells no name of its own, parsers read the fields."""

from __future__ import annotations

import re
from importlib import resources

from streams.store import keys, session_keys
from streams.store.funnel import APPLY_SCRIPT

BODY = resources.files("streams.store").joinpath("apply_batch.lua").read_text()
# Strings the script may write itself: Redis commands and their options, its reply statuses,
# number formats. Any key or field name among its literals would be a second definition.
ALLOWED_LITERALS = {
    "HGET",
    "HSET",
    "HMGET",
    "HSETNX",
    "HEXISTS",
    "HINCRBY",
    "HDEL",
    "DEL",
    "ZADD",
    "ZREM",
    "ZRANGEBYSCORE",
    "XADD",
    "*",  # XADD: Redis picks the entry id
    "GT",
    "NX",
    "LIMIT",
    "-inf",
    "(",
    "-1",
    "%d",
    "0",  # a session that holds no event yet
    "1",  # the "seen" mark of an event id
    "",  # no order id
    "[^,]+",
    "conflict",
    "ok",
}


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def test_the_script_spells_no_key_or_field_name() -> None:
    literals = set(re.findall(r"'((?:[^'\\]|\\.)*)'", _code(BODY)))
    assert literals <= ALLOWED_LITERALS, literals - ALLOWED_LITERALS


def test_every_constant_of_the_header_is_used_and_every_used_one_is_defined() -> None:
    code = _code(BODY + LIBRARY)
    for name in keys.LUA_CONSTANTS:
        assert re.search(rf"\b{name}\b", code), f"{name} is defined but the script never uses it"
    # SK.NAME is the session table's, not the header's.
    pattern = r"(?<!\.)\b((?:K|M|T|B|S|R)_[A-Z_]+|SEP|SEGMENT_[A-Z]+|RECORD_WIDTH)\b"
    used = set(re.findall(pattern, code))
    assert used <= set(keys.LUA_CONSTANTS), used - set(keys.LUA_CONSTANTS)


def test_the_loaded_script_is_the_header_then_the_body() -> None:
    table = session_keys.lua_table("SK", session_keys.SESSION_LUA)
    assert keys.lua_header() + table + LIBRARY + BODY == APPLY_SCRIPT
    assert "local R_CURRENCY = 10" in APPLY_SCRIPT  # the 11th slot, 0-based
    assert f"local RECORD_WIDTH = {len(keys.EventRecord._fields)}" in APPLY_SCRIPT


def test_lua_strings_are_escaped() -> None:
    header = keys.lua_header([("X", "a'b\\c\td")])
    assert "local X = 'a\\'b\\\\c\\td'" in header


def test_totals_parse_by_meaning() -> None:
    fields = {
        "ev|visit": 3,
        "ev|purchase": 1,
        "dup": 2,
        "rej|late": 1,
        "f|visit|organic|mobile": 3,
        "f|purchase|organic|mobile": 1,
        "o|organic|mobile": 1,
        "r|EUR": 125_000,
        "topic_resets": 1,
        "unknown|x": 9,
    }
    totals = keys.parse_totals(fields)
    assert totals.events == {"visit": 3, "purchase": 1}
    assert (totals.duplicates, totals.rejected, totals.topic_resets) == (2, {"late": 1}, 1)
    assert totals.funnel[("purchase", "organic", "mobile")] == 1
    assert totals.orders == {("organic", "mobile"): 1}
    assert totals.revenue_units == {"EUR": 125_000}
    assert totals.accounted == 3 + 1 + 2 + 1


def test_bucket_fields_group_by_dimension() -> None:
    fields = {
        "s|visit|organic|mobile": 4,
        "s|visit|email|mobile": 1,
        "sg|visit|DE": 5,
        "o|EUR|organic|mobile": 1,
        "og|EUR|DE": 1,
        "r|EUR|organic|mobile": 10_000,
        "rg|EUR|DE": 10_000,
    }
    assert keys.bucket_counts(fields)["all"].sessions == {"visit": 5}
    assert keys.bucket_counts(fields, "channel")["email"].sessions == {"visit": 1}
    assert keys.bucket_counts(fields, "device")["mobile"].revenue_units == {"EUR": 10_000}
    by_country = keys.bucket_counts(fields, "country")
    assert set(by_country) == {"DE"} and by_country["DE"].orders == {"EUR": 1}


def test_key_forms() -> None:
    prefix = keys.partition_prefix("storefront.events", 3)
    assert prefix == "sp:{storefront.events/3}:"
    assert keys.bucket_key(prefix, 1_800_000_000) == prefix + "b:1800000000"
    assert keys.partitions_key("t") == "sp:t:partitions"
    assert keys.rejected_field("schema") == "rej|schema"


# The session library (sessions.lua, bytes.lua) in front of the script: the same rules, with
# its names in the table SK (streams/store/session_keys.py).
LIBRARY = "".join(
    resources.files("streams.store").joinpath(name).read_text()
    for name in ("bytes.lua", "sessions.lua")
)
LIBRARY_LITERALS = {
    "GT",
    "HGET",
    "HGETALL",
    "HMGET",
    "HSET",
    "HDEL",
    "HINCRBY",
    "DEL",
    "ZADD",
    "ZREM",
    "ZSCORE",
    "ZRANGEBYSCORE",
    "ZMSCORE",
    "WITHSCORES",
    "NX",
    "LIMIT",
    "-inf",
    "(",
    "%d",
    "0",  # a zero amount, a session without visits or orders
    "",  # an empty slot of a withdrawn cart fact, or of an event without a sku
}


def test_the_session_library_spells_no_key_or_field_name() -> None:
    literals = set(re.findall(r"'((?:[^'\\]|\\.)*)'", _code(LIBRARY)))
    assert literals <= LIBRARY_LITERALS, literals - LIBRARY_LITERALS
    assert '"' not in _code(LIBRARY)


def test_the_session_library_uses_its_whole_table_and_nothing_else() -> None:
    code = _code(LIBRARY)
    used = set(re.findall(r"\bSK\.([A-Z_0-9]+)\b", code))
    assert used == set(session_keys.SESSION_LUA), used ^ set(session_keys.SESSION_LUA)
    header = set(re.findall(r"(?<!\.)\b((?:K|M|T|B|S|R|A)_[A-Z_]+|SEP|SEGMENT_[A-Z]+)\b", code))
    assert header <= set(keys.LUA_CONSTANTS), header - set(keys.LUA_CONSTANTS)


def test_the_session_figures_parse_by_dimension() -> None:
    fields = {
        "e|email|mobile": 3,
        "eg|DE": 3,
        "eb|email|mobile": 1,
        "et|email|mobile": 90_000,
        "ep|email|mobile": 4,
        "ka|email|mobile": 2,
        "kv|EUR|email|mobile": 125_000,
        "kvg|EUR|DE": 125_000,
        "kr|organic|mobile": 1,
        "kw|USD|organic|mobile": 50_000,
        "kc|email|mobile": 1,
        "s|visit|email|mobile": 9,  # a funnel field: not a session figure
    }
    everything = session_keys.session_counts(fields)["all"]
    assert (everything.ended, everything.bounces, everything.session_ms) == (3, 1, 90_000)
    assert (everything.abandoned, everything.recovered, everything.recovered_of_abandoned) == (
        2,
        1,
        1,
    )
    assert everything.recovered_units == {"USD": 50_000}
    assert set(session_keys.session_counts(fields, "channel")) == {"email", "organic"}
    assert session_keys.session_counts(fields, "country")["DE"].abandoned_units == {"EUR": 125_000}
