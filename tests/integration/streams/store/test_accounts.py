"""Both stages' Lua calls on a real redis-server: the account views against the reference.

Stage 1 applies events (any arrival order, duplicates) and hands its facts to stage 2, which
applies them shuffled and re-sent, with history rows; the directory is loaded; every report,
roll-up and sort must equal tests/reference_accounts.py, written from the issue.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.accounts import DirectoryRow
from streams.contract.facts import HistoryFact, encode_fact
from streams.query.accounts import AccountQuery, Accounts
from streams.settings import Settings
from streams.store.accounts import AccountStore
from streams.store.directory import DirectoryStore
from tests.integration.streams.store.test_customers import (
    NOW_MS,
    customer_settings,
    rounded,
    run_stages,
)
from tests.reference import dumps, event
from tests.reference_accounts import AccountReference

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
END_S = (NOW_MS // HOUR_MS + 1) * 3_600  # the end of the hour holding NOW
RANGES = [
    (END_S - 30 * 86_400, END_S),  # 30 days
    (END_S - 7 * 86_400 + 1_800, END_S - 86_400 - 900),  # not on hours: the hours inside
    (END_S - 12 * 3_600, END_S - 9 * 3_600),  # three hours
]
ACCOUNTS = ["acct-1", "acct-2", "acct|3", "acct-4"]
USERS = ["u-1", "u-2", "u-3", None]  # u-1 buys for two accounts; None: no user_id
DIRECTORY = {
    "acct-1": {"name": "One GmbH", "tier": "gold", "sales_rep": "rita"},
    "acct-2": {"name": "Two", "tier": "silver", "sales_rep": "rita"},
    "acct-9": {"name": "Never seen", "tier": "gold", "sales_rep": "sam"},  # history only
    "acct-8": {"name": "No rep", "tier": "silver", "sales_rep": None},
}


@st.composite
def traces(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int, int]]]:
    """Sessions of accounts over 40 days: several users, orders at cadences, anonymous bits."""
    events: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 14))):
        sid = f"s{i}"
        account = draw(st.sampled_from([*ACCOUNTS, None]))
        user = draw(st.sampled_from(USERS))
        who: dict[str, str] = {}
        if account:
            who["account_id"] = account
        if user:
            who["user_id"] = user
        # Sessions end before NOW (the clock: later events would be rejected as future).
        t = NOW_MS - 8 * HOUR_MS
        t -= draw(st.one_of(st.integers(0, 4 * HOUR_MS), st.integers(0, 40 * DAY_MS)))
        for k in range(draw(st.integers(1, 3))):
            events.append(event("visit", f"{sid}-v{k}", sid, t, **who))
            t += draw(st.integers(0, 2 * HOUR_MS))  # crosses hours
        for k in range(draw(st.integers(0, 2))):
            cents = draw(st.integers(0, 99_999))
            currency = draw(st.sampled_from(["EUR", "EUR", "EUR", "USD"]))
            events.append(
                event(
                    "purchase",
                    f"{sid}-p{k}",
                    sid,
                    t + k * draw(st.sampled_from([0, 1, HOUR_MS])),  # ties of ts too
                    order_id=f"o-{sid}-{k}",
                    revenue=f"{cents // 100}.{cents % 100:02d}",
                    currency=currency,
                    **who,
                )
            )
    named = [*ACCOUNTS, "acct-9", "u-2"]
    history = draw(
        st.dictionaries(
            st.sampled_from(named),
            st.tuples(st.integers(1, 3), st.integers(2, 60), st.integers(0, 45)).map(
                lambda t: (t[0], NOW_MS - max(t[1], t[2]) * DAY_MS, NOW_MS - t[2] * DAY_MS)
            ),
            max_size=3,
        )
    )
    return events, history


def history_facts(history: dict[str, tuple[int, int, int]]) -> list[bytes]:
    return [
        encode_fact(HistoryFact("h", c, str(n), str(f), str(last)))
        for c, (n, f, last) in history.items()
    ]


QUERIES: list[dict[str, Any]] = [
    {},
    {"sort": "orders", "top": 2},
    {"sort": "sessions", "top": 3},
    {"sort": "active_users"},
    {"sort": "last_order_at", "top": 2},
    {"tier": "gold"},
    {"rep": "rita", "sort": "orders"},
    {"at_risk": True},
    {"at_risk": True, "sort": "last_order_at", "top": 1},
]


async def views(s: Settings, client: Any, reader_factor: Decimal) -> dict[str, Any]:
    reader = s.model_copy(update={"at_risk_factor": reader_factor})
    accounts = Accounts(AccountStore(client, reader), DirectoryStore(client, reader), reader)
    out: dict[str, Any] = {}
    for k, (a, b) in enumerate(RANGES):
        for n, q in enumerate(QUERIES):
            out[f"report/{k}/{n}"] = await accounts.report(AccountQuery(a, b, **q))
        out[f"reps/{k}"] = await accounts.reps(a, b)
    return out


def expected(ref: AccountReference) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, (a, b) in enumerate(RANGES):
        for n, q in enumerate(QUERIES):
            out[f"report/{k}/{n}"] = ref.report(a, b, **q)
        out[f"reps/{k}"] = ref.reps(a, b)
    return out


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name in want:
        g, w = rounded(got[name]), rounded(want[name])
        if name.startswith("report/"):
            assert g["totals"] == w["totals"], name
            assert [r["account_id"] for r in g["accounts"]] == [
                r["account_id"] for r in w["accounts"]
            ], name
            for row_g, row_w in zip(g["accounts"], w["accounts"], strict=True):
                assert row_g == row_w, (name, row_w["account_id"])
        assert g == w, name


async def load_directory(s: Settings, client: Any) -> None:
    rows = [DirectoryRow(a, v["name"], v["tier"], v["sales_rep"]) for a, v in DIRECTORY.items()]
    await DirectoryStore(client, s).replace(rows)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trace=traces(), seed=st.integers(0, 2**16), reader=st.sampled_from(["2", "1.5"]))
def test_any_arrival_order_and_duplicates_give_the_reference_views(
    trace, seed, reader, make_settings
) -> None:
    events, history = trace
    s = customer_settings(make_settings)
    rng = random.Random(seed)
    shuffled = [dumps(e) for e in events]
    rng.shuffle(shuffled)
    shuffled += [shuffled[rng.randrange(len(shuffled))] for _ in range(3)]  # re-sent events
    rng.shuffle(shuffled)
    ordered = [dumps(e) for e in sorted(events, key=lambda e: (e["ts"], e["event_id"]))]

    async def run(values: list[bytes], shuffle: random.Random | None, batch: int) -> dict:
        _, _, client, _ = await run_stages(s, values, history_facts(history), shuffle, batch)
        try:
            await load_directory(s, client)
            return await views(s, client, Decimal(reader))
        finally:
            await client.aclose()

    ref = AccountReference(events, history, DIRECTORY, Decimal(reader))
    want = expected(ref)
    assert_same(asyncio.run(run(ordered, None, 1000)), want)
    assert_same(asyncio.run(run(shuffled, rng, 3)), want)


async def test_at_risk_at_the_threshold_and_with_orders_after_to(make_settings) -> None:
    """Exactly 3 orders (median: the mean of the two gaps), equal to the threshold is not
    more than it; a later order does not count at an earlier `to`; both the worker's index
    (reader with the worker's factor) and the one-by-one path (another factor)."""
    s = customer_settings(make_settings)
    t0 = (NOW_MS // HOUR_MS - 40) * HOUR_MS

    def orders(account: str, hours: list[int]) -> list[dict[str, Any]]:
        return [
            event(
                "purchase",
                f"{account}-{h}",
                f"{account}-s{h}",
                t0 + h * HOUR_MS,
                account_id=account,
                order_id=f"{account}-o{h}",
            )
            for h in hours
        ]

    evs = orders("three", [0, 2, 3]) + orders("later", [0, 2, 3, 10])
    _, _, client, _ = await run_stages(s, [dumps(e) for e in evs])
    try:
        for factor, calm, risky in (("2", 6, 7), ("1.5", 5, 6)):
            reader = s.model_copy(update={"at_risk_factor": Decimal(factor)})
            accounts = Accounts(
                AccountStore(client, reader), DirectoryStore(client, reader), reader
            )
            for to_h, want in ((calm, []), (risky, ["later", "three"])):
                to = t0 // 1000 + to_h * 3_600
                got = await accounts.report(AccountQuery(to - 86_400, to, at_risk=True))
                assert [r["account_id"] for r in got["accounts"]] == want, (factor, to_h)
                assert got["totals"]["at_risk_accounts"] == len(want)
                assert all(r["at_risk"] for r in got["accounts"])
            # After its 4th order "later" is calm again (gaps 2, 1, 7 h: median 2 h).
            to = t0 // 1000 + 11 * 3_600
            got = await accounts.report(AccountQuery(to - 86_400, to, at_risk=True))
            assert [r["account_id"] for r in got["accounts"]] == ["three"]
    finally:
        await client.aclose()


async def test_readers_see_the_old_directory_or_the_new_one_never_a_mix(make_settings) -> None:
    s = customer_settings(make_settings)
    old = [DirectoryRow(f"a{i}", "old", "gold", "rita") for i in range(5_000)]
    new = [DirectoryRow(f"a{i}", "new", "silver", None) for i in range(0, 8_000, 2)]
    _, _, client, _ = await run_stages(s, [])
    try:
        await DirectoryStore(client, s).replace(old)
        seen: list[tuple[str, ...]] = []
        done = asyncio.Event()

        async def read() -> None:
            while not done.is_set():
                got = await DirectoryStore(client, s).read()  # no cache: a new store each time
                seen.append(tuple(sorted({r.name or "" for r in got.rows.values()})))
                assert len(got.rows) in (5_000, 4_000, 4_001), len(got.rows)

        async def write() -> None:
            await DirectoryStore(client, s).replace(new)
            await DirectoryStore(client, s).upsert([DirectoryRow("a1", "up", "gold", "sam")])
            done.set()

        await asyncio.gather(read(), read(), write())
        assert set(seen) <= {("old",), ("new",), ("new", "up")}
        final = await DirectoryStore(client, s).read()
        assert len(final.rows) == 4_001 and final.row("a1").sales_rep == "sam"
        assert final.row("a0").tier == "silver" and final.row("a3").tier == "unassigned"
        # An upsert flips only over the version it merged: a stale one is refused.
        store = DirectoryStore(client, s)
        (status,) = await store._call("flip", "999", "0", 0)
        assert status == b"conflict"
    finally:
        await client.aclose()
