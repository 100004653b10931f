"""The customer stage's grammar: apply_customers.lua spells no name, uses its whole header."""

from __future__ import annotations

import re
from importlib import resources

from streams.contract.periods import PERIODS
from streams.store import account_keys as ak
from streams.store import customer_keys as ck
from streams.store.customers import ACCOUNTS_MARK, CUSTOMER_SCRIPT

BODY = resources.files("streams.store").joinpath("apply_customers.lua").read_text()
# The carts' library in front of it (carts.lua, bytes.lua), its names in the table CK.
LIBRARY = "".join(
    resources.files("streams.store").joinpath(name).read_text()
    for name in ("bytes.lua", "carts.lua")
)
# Redis commands and options, number formats: nothing that names a key or a field.
ALLOWED_LITERALS = {
    "HGET",
    "HSET",
    "HEXISTS",
    "HINCRBY",
    "SADD",
    "SREM",
    "SISMEMBER",
    "ZADD",
    "ZRANGE",
    "ZREM",
    "ZRANGEBYSCORE",
    "UNLINK",
    "HDEL",
    "DEL",
    "WITHSCORES",
    "%d",
    "",  # a withdrawn cart has no end
    "0",  # a zero amount
    "NX",
    "LIMIT",
    "-inf",
    "(",
    "-1",
}


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def test_the_script_spells_no_key_or_field_name() -> None:
    literals = set(re.findall(r"'((?:[^'\\]|\\.)*)'", _code(BODY + LIBRARY)))
    assert literals <= ALLOWED_LITERALS, literals - ALLOWED_LITERALS
    assert '"' not in _code(BODY + LIBRARY)


def test_every_constant_of_the_header_is_used_and_every_used_one_is_defined() -> None:
    code = _code(BODY + LIBRARY)
    # The account views inserted into it use some of the customer constants too (A_RISK_FACTOR,
    # the session and user slots).
    inserted = resources.files("streams.store").joinpath("apply_accounts.lua").read_text()
    for name in ck.LUA_CONSTANTS:
        if name in {"A_RISK_FACTOR", "R_SESSION_ID", "R_USER_ID"}:
            assert re.search(rf"\b{name}\b", _code(inserted)), name
            continue
        assert re.search(rf"\b{name}\b", code), f"{name} is defined but the script never uses it"
    used = set(re.findall(r"(?<!\.)\b((?:K|M|T|P|V|C|O|A|R|G)_[A-Z_0-9]+)\b", code))
    assert used <= set(ck.LUA_CONSTANTS), used - set(ck.LUA_CONSTANTS)
    table = set(re.findall(r"\bCK\.([A-Z_0-9]+)\b", code))
    assert table == set(ck.CARTS_LUA), table ^ set(ck.CARTS_LUA)


def test_the_loaded_script_is_the_header_then_the_body() -> None:
    # The headers, the carts' table and library, then the body with the account views inserted
    # where it marks them (tests/unit/streams/store/test_account_keys). Of the account constants
    # only those the inserted scripts name: the query's own would take locals of the main chunk
    # (Lua allows 200 there).
    sources = resources.files("streams.store")
    inserted = "".join(
        sources.joinpath(name).read_text() for name in ("account_lib.lua", "apply_accounts.lua")
    )
    query_only = {n for n in ak.LUA_CONSTANTS if not re.search(rf"\b{n}\b", inserted)}
    assert {"Q_MODE", "MODE_RANK", "SORT_REVENUE", "TMP_SCORES"} <= query_only
    assert not query_only & {"K_ACCOUNTS", "HOUR_FORMAT"}, query_only
    assert (
        ck.lua_header()
        + ak.lua_header(skip=frozenset(ck.LUA_CONSTANTS) | query_only)
        + ck.carts_table()
        + LIBRARY
        + BODY.replace(ACCOUNTS_MARK, inserted, 1)
        == CUSTOMER_SCRIPT
    )
    assert f"local RECORD_WIDTH = {len(ck.FactRecord._fields)}" in CUSTOMER_SCRIPT
    # The four period slots follow each other in PERIODS order: the script indexes them so.
    slots = [ck.FactRecord._fields.index(p) for p in PERIODS]
    assert slots == list(range(slots[0], slots[0] + len(PERIODS)))
    assert ck.LUA_CONSTANTS["COHORT_FROM"] == 2  # day, week, month


def test_key_forms() -> None:
    assert ck.period_key("sp:{c/1}:", ck.ACTIVE, "week", 1_795_046_400) == (
        "sp:{c/1}:pa:w:1795046400"
    )
    assert ck.period_key("p:", ck.COHORT_VALUES, "month", 0) == "p:cv:m:0"
