"""/api/accounts, /api/accounts/ID, /api/reps and the account gauges, on Routes.handle directly."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.exporter.alerts import AlertBook
from streams.exporter.cache import SingleFlightCache
from streams.exporter.routes import Response, Routes
from streams.exporter.snapshot import SnapshotReader
from streams.query.accounts import AccountQuery
from streams.settings import Settings
from tests.unit.streams.account_double import MemoryAccounts
from tests.unit.streams.customer_double import MemoryCustomers
from tests.unit.streams.exporter.test_routes import END, Clock, MemoryStore
from tests.unit.streams.metas import NOW, meta

HOUR_END = -(-END // 3_600) * 3_600  # the end of the hour holding the newest complete bucket


def make(accounts: MemoryAccounts, **settings: Any) -> Routes:
    s = Settings(**settings)
    store = MemoryStore([meta(0, NOW + 50, applied_s=NOW + 50), meta(1, NOW + 25)])

    async def ping() -> bool:
        return True

    return Routes(
        s,
        store,  # type: ignore[arg-type]
        SnapshotReader(store, s, Clock(NOW + 55)),  # type: ignore[arg-type]
        SingleFlightCache(1.0, clock=Clock(1_000.0)),
        AlertBook(),
        ping,
        customers=MemoryCustomers(),  # type: ignore[arg-type]
        accounts=accounts,  # type: ignore[arg-type]
    )


def body(response: Response) -> Any:
    assert response.content_type == "application/json"
    return json.loads(response.body)


async def test_the_report_takes_the_clis_options_and_defaults_to_30_days() -> None:
    accounts = MemoryAccounts()
    routes = make(accounts)
    assert (await routes.handle("GET", "/api/accounts")).status == 200
    assert accounts.asked[-1] == AccountQuery(HOUR_END - 30 * 86_400, HOUR_END)
    query = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&top=5&sort=orders&tier=gold"
    assert (
        await routes.handle("GET", f"/api/accounts?{query}&rep=rita&at_risk=true&q=Gm")
    ).status == 200
    assert accounts.asked[-1] == AccountQuery(
        1_793_491_200, 1_793_577_600, 5, "orders", "gold", "rita", True, "Gm"
    )
    assert (await routes.handle("GET", "/api/accounts?days=7")).status == 200
    assert accounts.asked[-1] == AccountQuery(HOUR_END - 7 * 86_400, HOUR_END)


async def test_bad_parameters_are_400_with_the_reason() -> None:
    routes = make(MemoryAccounts())
    for query, reason in (
        ("sort=name", "sort must be one of"),
        ("top=0", "top must be"),
        ("at_risk=maybe", "at_risk must be"),
        ("from=2026-11-01T00:00:00Z", "give both from and to"),
        ("days=94", "days must be"),
        ("account=a1", "unknown parameters: account"),
    ):
        got = await routes.handle("GET", f"/api/accounts?{query}")
        assert got.status == 400 and reason in body(got)["error"], query


async def test_one_account_by_its_escaped_id_and_an_unknown_one() -> None:
    accounts = MemoryAccounts()
    routes = make(accounts)
    got = await routes.handle("GET", "/api/accounts/a1?days=2")
    assert got.status == 200 and body(got)["account"]["account_id"] == "a1"
    assert accounts.asked[-1] == ("a1", HOUR_END - 2 * 86_400, HOUR_END)
    missing = await routes.handle("GET", "/api/accounts/b%2F1")
    assert missing.status == 404 and "'b/1'" in body(missing)["error"]
    assert (await routes.handle("GET", "/api/accounts/a1?top=3")).status == 400
    reps = await routes.handle("GET", "/api/reps?days=3")
    assert reps.status == 200 and accounts.asked[-1] == ("reps", HOUR_END - 3 * 86_400, HOUR_END)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def labels(family: Any, name: str) -> set[str]:
    return {s.labels[name] for s in family.samples}


async def test_gauges_by_tier_bounded_and_by_rep_only_when_asked() -> None:
    many = MemoryAccounts(tiers=25, reps=3)
    got = families((await make(many).handle("GET", "/metrics")).body.decode())
    tiers = labels(got["storepulse_accounts_active"], "tier")
    # The 20 largest tiers by name (here all of 2 accounts: the first by name), others, none.
    assert len(tiers) == 22 and {"other", "unassigned"} <= tiers
    active = {s.labels["tier"]: s.value for s in got["storepulse_accounts_active"].samples}
    assert active["other"] == 10 and active["unassigned"] == 0
    usage = {s.labels["tier"]: s.value for s in got["storepulse_account_usage_ratio"].samples}
    assert usage["other"] == 0.4 and "t0" not in usage  # 10 users < STOREPULSE_MIN_SAMPLE
    assert not any(name.startswith("storepulse_rep_") for name in got)
    revenue = got["storepulse_account_revenue"].samples
    assert {(s.labels["tier"], s.labels["currency"], s.value) for s in revenue} >= {
        ("other", "EUR", 12.5)
    }
    assert got["storepulse_account_directory_rejected"].samples[-1].value >= 0

    with_reps = families(
        (
            await make(MemoryAccounts(reps=3), export_rep_labels=True).handle("GET", "/metrics")
        ).body.decode()
    )
    rep_active = {
        s.labels["sales_rep"]: s.value for s in with_reps["storepulse_rep_accounts_active"].samples
    }
    # The reps' rows and the row of accounts without one, always there (0 here: every row has one).
    assert rep_active == {"r0": 2, "r1": 2, "r2": 2, "none": 0}
    too_many = families(
        (
            await make(MemoryAccounts(reps=201), export_rep_labels=True).handle("GET", "/metrics")
        ).body.decode()
    )
    assert "storepulse_rep_accounts_active" not in too_many
