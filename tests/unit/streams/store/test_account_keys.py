"""The account views' grammar: their Lua spells no name, and uses the whole header."""

from __future__ import annotations

import re
from importlib import resources

from streams.store import account_keys as ak
from streams.store import customer_keys as ck
from streams.store.accounts import QUERY_SCRIPT
from streams.store.customers import ACCOUNTS_MARK, CUSTOMER_SCRIPT

SOURCES = resources.files("streams.store")
BODIES = {
    name: SOURCES.joinpath(name).read_text()
    for name in ("apply_accounts.lua", "account_lib.lua", "query_accounts.lua")
}
# Redis commands and options, number formats, the empty string: nothing that names a key, a
# field, a mode or a member.
ALLOWED_LITERALS = {
    "DEL",
    "HGET",
    "HGETALL",
    "HEXISTS",
    "HINCRBY",
    "HKEYS",
    "HSET",
    "SADD",
    "SISMEMBER",
    "SMEMBERS",
    "UNLINK",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREM",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZUNIONSTORE",
    "BYLEX",
    "LIMIT",
    "LT",
    "NX",
    "REV",
    "WEIGHTS",
    "WITHSCORES",
    "(",
    "[",
    "-inf",
    "+inf",
    "%d",
    "",
}


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def test_the_scripts_spell_no_key_or_field_name() -> None:
    for name, body in BODIES.items():
        literals = set(re.findall(r"'((?:[^'\\]|\\.)*)'", _code(body)))
        assert literals <= ALLOWED_LITERALS, (name, literals - ALLOWED_LITERALS)
        assert '"' not in _code(body), name


def test_every_constant_of_the_header_is_used_and_every_used_one_is_defined() -> None:
    code = "\n".join(_code(b) for b in BODIES.values())
    for name in [*ak.LUA_CONSTANTS, "PACK_FIELD", "PACK_RECORD"]:
        assert re.search(rf"\b{name}\b", code), f"{name} is defined but no script uses it"
    pattern = r"\b((?:K|M|H|HT|PT|PK|Q|MODE|SCOPE|SORT|TMP)_[A-Z_0-9]+)\b"
    used = set(re.findall(pattern, code))
    defined = set(ak.LUA_CONSTANTS) | set(ck.LUA_CONSTANTS)
    assert used <= defined, used - defined


def test_the_loaded_scripts_are_headers_then_bodies() -> None:
    customers = SOURCES.joinpath("apply_customers.lua").read_text()
    assert customers.count(ACCOUNTS_MARK) == 1
    inserted = BODIES["account_lib.lua"] + BODIES["apply_accounts.lua"]
    assert CUSTOMER_SCRIPT.endswith(customers.replace(ACCOUNTS_MARK, inserted))
    assert QUERY_SCRIPT.endswith(BODIES["account_lib.lua"] + BODIES["query_accounts.lua"])
    # The pack bytes go to Redis as single bytes, not as UTF-8 of two.
    assert "local PACK_FIELD = '\\254'" in QUERY_SCRIPT
    assert ak.PACK_FIELD == b"\xfe" and ak.PACK_RECORD == b"\xff"


def test_key_and_member_forms() -> None:
    assert ak.hour_key("sp:{c/1}:", ak.HOUR_PREV + "u", 1_795_046_400) == (
        "sp:{c/1}:xuh:1795046400"
    )
    assert ak.revenue_key("p:", "EUR", 0) == "p:yr|EUR|h:0"
    # The account's length ends it, whatever the item: "a|b" + "c" is not "a" + "|bc".
    assert ak.encode_member("a|b", "c") != ak.encode_member("a", "|bc")
    assert ak.LUA_CONSTANTS["HOUR_FORMAT"] % 1_795_046_400 == "001795046400"
