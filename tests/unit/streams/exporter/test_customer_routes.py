"""/api/customers, /api/cohorts and the customer metric families, on Routes.handle directly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.contract.periods import period_start
from streams.contract.times import iso
from streams.exporter.alerts import AlertBook
from streams.exporter.cache import SingleFlightCache
from streams.exporter.routes import Response, Routes
from streams.exporter.snapshot import SnapshotReader
from streams.settings import Settings
from tests.unit.streams.account_double import MemoryAccounts
from tests.unit.streams.customer_double import MemoryCustomers
from tests.unit.streams.exporter.test_routes import END, Clock, MemoryStore
from tests.unit.streams.metas import NOW, meta


@pytest.fixture
def routes() -> Routes:
    settings = Settings(channels=("email", "organic"), devices=("desktop", "mobile"))
    store = MemoryStore([meta(0, NOW + 50, applied_s=NOW + 50), meta(1, NOW + 25)])

    async def ping() -> bool:
        return True

    return Routes(
        settings,
        store,  # type: ignore[arg-type]
        SnapshotReader(store, settings, Clock(NOW + 55)),  # type: ignore[arg-type]
        SingleFlightCache(1.0, clock=Clock(1_000.0)),
        AlertBook(),
        ping,
        customers=MemoryCustomers(),  # type: ignore[arg-type]
        accounts=MemoryAccounts(),  # type: ignore[arg-type]
    )


def body(response: Response) -> Any:
    assert response.content_type == "application/json"
    return json.loads(response.body)


async def test_recent_days_end_with_the_one_holding_the_newest_complete_bucket(
    routes: Routes,
) -> None:
    got = body(await routes.handle("GET", "/api/customers?period=day&last=2"))
    today = period_start("day", END - 1)
    assert [r["start"] for r in got["rows"]] == [iso(today - 86_400), iso(today)]
    assert (got["period"], got["from"], got["to"]) == (
        "day",
        iso(today - 86_400),
        iso(today + 86_400),
    )
    row = got["rows"][-1]
    assert row["new_customers"] == 4 and row["returning_customers"] == 4
    assert row["new_customers_by_channel"] == {"email": 4, "organic": 0}
    assert row["retention_rate"] == 25 / 8
    assert row["revenue"] == "100.00" and row["revenue_per_customer"] == "12.50"
    assert row["anonymous_orders"] == 1  # one per day in the double
    assert row["order_growth"] == 0.0


async def test_an_explicit_range_and_the_cohorts(routes: Routes) -> None:
    got = body(
        await routes.handle("GET", f"/api/customers?period=hour&from={END - 7200}000&to={END}000")
    )
    assert len(got["rows"]) == 2
    cohorts = body(await routes.handle("GET", "/api/cohorts?period=week&last=3"))
    assert len(cohorts["cohorts"]) == 3
    first = cohorts["cohorts"][0]
    assert first["customers"] == 4 and first["retention"][0] == 1.0
    assert first["revenue_per_customer"][0] == "2.00"  # 8.00 EUR over 4 customers


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/customers?period=year", "period must be one of hour, day, week, month"),
        ("/api/cohorts?period=hour", "period must be one of day, week, month"),
        ("/api/customers?last=0", "last must be a whole number"),
        ("/api/customers?last=x", "last must be a whole number"),
        ("/api/customers?from=2026-01-01T00:00:00Z", "give both from and to"),
        ("/api/customers?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to must be after"),
        ("/api/customers?from=1&to=2&last=3", "either from and to, or last"),
        (
            "/api/customers?from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&period=hour",
            "range over 1000",
        ),
        ("/api/customers?from=nope&to=2", "is not ISO 8601"),
        ("/api/cohorts?who=u-1", "unknown parameters: who"),
    ],
)
async def test_bad_customer_queries_answer_400(routes: Routes, path: str, message: str) -> None:
    response = await routes.handle("GET", path)
    assert response.status == 400, body(response)
    assert message in body(response)["error"]


async def test_the_customer_families_with_bounded_labels(routes: Routes) -> None:
    text = (await routes.handle("GET", "/metrics")).body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("storepulse_customer_orders_total", (("kind", "new"),))] == 4
    assert samples[("storepulse_customer_orders_total", (("kind", "returning"),))] == 6
    assert (
        samples[("storepulse_customers_new_total", (("channel", "email"), ("device", "desktop")))]
        == 4
    )
    assert (
        samples[("storepulse_customers_new_total", (("channel", "organic"), ("device", "mobile")))]
        == 0
    )
    assert samples[("storepulse_customer_revenue_total", (("currency", "EUR"),))] == 100.0
    assert samples[("storepulse_customer_facts_rejected_total", (("reason", "schema"),))] == 1
    assert samples[("storepulse_period_customers", (("kind", "repeat"), ("period", "week")))] == 2
    assert samples[("storepulse_period_orders", (("kind", "anonymous"), ("period", "hour")))] == 0
    assert samples[("storepulse_customer_consumer_lag", (("partition", "0"),))] == 3
    # 8 ordering customers before: below the minimum sample (20), no retention ratio.
    assert not families["storepulse_period_retention_ratio"].samples
    start = samples[("storepulse_period_start_timestamp_seconds", (("period", "day"),))]
    assert start == period_start("day", END - 1)
    labels = {
        k
        for f in families.values()
        if f.name.startswith("storepulse_")
        for s in f.samples
        for k in s.labels
    }
    assert not labels & {"customer", "user_id", "account_id", "order_id", "session_id"}
