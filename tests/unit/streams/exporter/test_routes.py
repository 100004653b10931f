"""Routes.handle, called directly: every route, every error, the 1 s cache, Redis unavailable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storepulse.local.procs import free_port
from streams.exporter.alerts import AlertBook
from streams.exporter.cache import SingleFlightCache
from streams.exporter.routes import MAX_RANGE_BUCKETS, RequestError, Response, Routes
from streams.exporter.snapshot import SnapshotReader
from streams.query.kpis import kpi_report
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import BucketSums, FunnelStore, PartitionMeta
from tests.unit.streams.account_double import MemoryAccounts
from tests.unit.streams.customer_double import MemoryCustomers
from tests.unit.streams.metas import NOW, meta

END = int(NOW)  # the window end of the data below: the newest complete bucket ends at NOW
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def minute(channel: str, device: str, visits: int, carts: int, orders: int) -> dict[str, int]:
    """One bucket's fields for one segment: every cart reaches every checkout step."""
    fields = {f"s|visit|{channel}|{device}": visits, "sg|visit|DE": visits}
    for stage in ("cart", "shipping", "payment", "review"):
        fields[f"s|{stage}|{channel}|{device}"] = carts
    fields[f"s|purchase|{channel}|{device}"] = orders
    fields[f"o|EUR|{channel}|{device}"] = orders
    fields[f"r|EUR|{channel}|{device}"] = orders * 425_000  # 42.50 each, in ten-thousandths
    return fields


def merged(*parts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0) + value
    return out


class MemoryStore:
    """FunnelStore's read side over fixed data: a double of our own code, no Redis.

    Buckets cover the hour before END and the bucket starting at END, which the watermarks
    have not passed yet (it must stay out of every window ending "now").
    """

    def __init__(self, metas: Sequence[PartitionMeta]) -> None:
        self._metas = list(metas)
        self.buckets = {
            b: merged(minute("email", "desktop", 3, 2, 1), minute("organic", "mobile", 5, 2, 0))
            for b in range(END - 3_600, END + 60, 60)
        }
        self.totals_fields = {"ev|visit": 480, "dup": 3, "rej|schema": 2, "r|EUR": 60 * 425_000}
        self.reads = 0  # calls of any read method: Redis round trips in the real store
        self.fail: Exception | None = None

    def _read(self) -> None:
        self.reads += 1
        if self.fail is not None:
            raise self.fail

    async def partitions(self) -> list[int]:
        self._read()
        return [m.partition for m in self._metas]

    async def totals(self, partitions: Sequence[int]) -> dict[str, int]:
        self._read()
        return dict(self.totals_fields)

    async def metas(self, partitions: Sequence[int]) -> list[PartitionMeta]:
        self._read()
        return [m for m in self._metas if m.partition in partitions]

    async def bucket_sums(
        self, from_s: int, to_s: int, partitions: Sequence[int] | None = None
    ) -> BucketSums:
        self._read()
        sums = BucketSums()
        for b, fields in self.buckets.items():
            if from_s <= b < to_s:
                sums.add({k.encode(): str(v).encode() for k, v in fields.items()})
        return sums


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


TOKEN = "t0ken-for-the-unit-tests"
AUTH = f"Bearer {TOKEN}"
JSON = "application/json"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        channels=("email", "organic"), devices=("desktop", "mobile"), webhook_token=TOKEN
    )


@pytest.fixture
def monotonic() -> Clock:
    return Clock(1_000.0)


@pytest.fixture
def store() -> MemoryStore:
    # Partition 1 is 25 s behind: the bucket [END, END + 60) is not complete on it.
    return MemoryStore([meta(0, NOW + 50, applied_s=NOW + 50), meta(1, NOW + 25)])


@pytest.fixture
def routes(settings: Settings, store: MemoryStore, monotonic: Clock) -> Routes:
    pings: list[int] = []

    async def ping() -> bool:
        pings.append(1)
        return True

    reader = SnapshotReader(store, settings, Clock(NOW + 55))  # type: ignore[arg-type]
    return Routes(
        settings,
        store,  # type: ignore[arg-type]
        reader,
        SingleFlightCache(1.0, clock=monotonic),
        AlertBook(),
        ping,
        customers=MemoryCustomers(),  # type: ignore[arg-type]
        accounts=MemoryAccounts(),  # type: ignore[arg-type]
    )


@pytest.fixture
async def down(settings: Settings) -> AsyncIterator[Routes]:
    """Routes over a real FunnelStore whose Redis client points at a closed port."""
    offline = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = connect(offline)
    store = FunnelStore(client, offline)
    yield Routes(
        offline,
        store,
        SnapshotReader(store, offline),
        SingleFlightCache(1.0),
        AlertBook(),
        client.ping,
    )
    await client.aclose()


def body(response: Response) -> Any:
    assert response.content_type == "application/json"
    return json.loads(response.body)


async def kpis(routes: Routes, query: str) -> Response:
    return await routes.handle("GET", f"/api/kpis?{query}" if query else "/api/kpis")


# /metrics ---------------------------------------------------------------------------------


async def test_metrics_serve_the_text_format_by_default(routes: Routes) -> None:
    response = await routes.handle("GET", "/metrics")
    assert response.status == 200
    assert response.content_type == TEXT
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    assert families["storepulse_events"].type == "counter"
    (visits,) = [s for s in families["storepulse_events"].samples if s.labels == {"type": "visit"}]
    assert visits.value == 480
    (end,) = families["storepulse_window_end_timestamp_seconds"].samples
    assert end.value == END
    assert "process_cpu_seconds" in families  # the exporter's own process metrics
    # 15 minutes of 8 visits a minute, the bucket at END left out.
    assert (
        'storepulse_window_sessions{channel="all",device="all",stage="visit",window="15m"} 120.0'
        in response.body.decode()
    )


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ],
)
async def test_metrics_serve_openmetrics_when_asked(routes: Routes, accept: str) -> None:
    response = await routes.handle("GET", "/metrics", accept=accept)
    assert response.status == 200
    assert response.content_type.startswith(OPENMETRICS + "; charset=utf-8")
    assert response.body.endswith(b"# EOF\n")
    assert b'storepulse_events_total{type="visit"} 480.0' in response.body


async def test_metrics_within_a_second_read_the_store_once(
    routes: Routes, store: MemoryStore, monotonic: Clock
) -> None:
    first = await routes.handle("GET", "/metrics")
    reads = store.reads
    assert reads == 6  # partitions, totals, metas, the buckets of each of the 3 slices
    monotonic.now += 0.5
    assert await routes.handle("GET", "/metrics") is first
    # Another format is another rendering, but of the same snapshot.
    assert (await routes.handle("GET", "/metrics", accept=OPENMETRICS)).status == 200
    assert store.reads == reads
    monotonic.now += 0.6  # 1.1 s after the first read: a fresh one
    await routes.handle("GET", "/metrics")
    assert store.reads == 2 * reads


# /api/kpis --------------------------------------------------------------------------------


async def test_the_default_window_is_15_minutes_ending_at_the_newest_complete_bucket(
    routes: Routes, store: MemoryStore, settings: Settings
) -> None:
    response = await kpis(routes, "")
    assert response.status == 200
    got = body(response)
    recoveries = routes.customer_store
    assert got == await kpi_report(store, settings, END - 900, END, None, recoveries)  # type: ignore[arg-type]
    assert (got["recovered_carts"], got["recovered_revenue"]) == (15, "150.00")
    assert got["from"] == "2027-01-15T07:45:00Z"
    assert got["to"] == "2027-01-15T08:00:00Z"
    assert got["sessions"]["visit"] == 15 * 8
    assert got["orders"] == 15
    assert got["revenue"] == "637.50"
    assert got["conversion_rate"] == 15 / 120


async def test_window_by_and_explicit_ranges(routes: Routes) -> None:
    hour = body(await kpis(routes, "window=1h&by=channel"))
    assert (hour["from"], hour["to"], hour["by"]) == (
        "2027-01-15T07:00:00Z",
        "2027-01-15T08:00:00Z",
        "channel",
    )
    assert {name: g["sessions"]["visit"] for name, g in hour["groups"].items()} == {
        "email": 180,
        "organic": 300,
    }
    countries = body(await kpis(routes, "window=90s&by=country"))
    assert countries["groups"]["DE"]["sessions"]["visit"] == 8  # one bucket: END - 60
    explicit = body(await kpis(routes, "from=2027-01-15T07:50:00Z&to=2027-01-15T07:52:00Z"))
    assert explicit["sessions"]["visit"] == 16
    # `+` must be written %2B in a URL; epoch milliseconds work too.
    offset = body(await kpis(routes, "from=2027-01-15T08:50:00%2B01:00&to=1800000000000"))
    assert (offset["from"], offset["sessions"]["visit"]) == ("2027-01-15T07:50:00Z", 80)
    # from alone ends at the window end; to alone with a window goes back from to.
    assert body(await kpis(routes, "from=2027-01-15T07:59:00Z"))["to"] == "2027-01-15T08:00:00Z"
    back = body(await kpis(routes, "to=2027-01-15T07:30:00Z&window=5m"))
    assert (back["from"], back["sessions"]["visit"]) == ("2027-01-15T07:25:00Z", 40)
    # The incomplete bucket at END is there when asked for explicitly.
    assert body(await kpis(routes, "from=1800000000000&to=1800000060000"))["orders"] == 1
    # The longest range allowed is 10,080 buckets (7 days of 60 s).
    assert (await kpis(routes, "window=7d")).status == 200
    assert MAX_RANGE_BUCKETS == 7 * 24 * 60


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("x=1", "unknown parameters: x"),
        ("window=15m&limit=3&x=1", "unknown parameters: limit, x"),
        ("by=user", "by must be one of channel, device, country"),
        ("window=0m", "'0m' is not a positive duration"),
        ("window=15x", "expected a positive duration like 15m, 1h, 7d, got '15x'"),
        ("window=-5m", "expected a positive duration"),
        ("window=1.5h", "expected a positive duration"),
        ("window=" + "9" * 50, "is not a duration"),
        ("from=yesterday", "is not ISO 8601"),
        ("from=2027-01-15T07:00:00", "has no time zone"),
        ("from=2027-01-15T07:00:00+01:00", "is not ISO 8601"),  # an unescaped + is a space
        ("from=2027-01-15T07:00:00Z&window=5m", "give either from (with an optional to) or window"),
        ("from=2027-01-15T08:00:00Z&to=2027-01-15T07:00:00Z", "to must be after from"),
        ("from=2027-01-15T08:00:00Z&to=2027-01-15T08:00:00Z", "to must be after from"),
        ("from=2027-01-15T08:00:30Z", "to must be after from"),  # the window end is 08:00
        ("window=8d", "range over 10080 buckets; ask for a shorter one"),
        ("from=946684800000&to=1800000000000", "range over 10080 buckets"),
        # Before 2000 is a mistake (epoch seconds for milliseconds, a 0), not a 1969 answer.
        ("to=0", "'0' is before 2000-01-01T00:00:00Z"),
        ("from=0&to=1800000000000", "'0' is before 2000-01-01T00:00:00Z"),
        ("from=1800000000", "'1800000000' is before 2000-01-01T00:00:00Z"),
        ("to=1999-12-31T23:59:59Z", "is before 2000-01-01"),
        # Long numbers are refused by their length, never reach int() and its digit limit.
        ("window=" + "9" * 10_000, "is not a duration"),
        ("to=" + "9" * 10_000, "is not an instant (too long)"),
    ],
)
async def test_bad_kpi_queries_answer_400_with_a_message(
    routes: Routes, store: MemoryStore, query: str, message: str
) -> None:
    response = await kpis(routes, query)
    assert response.status == 400, response.body
    assert message in body(response)["error"]
    # Nothing beyond the window end (2 round trips at most) is read for a refused query.
    assert store.reads <= 2


async def test_identical_kpi_queries_within_a_second_compute_once(
    routes: Routes, store: MemoryStore, monotonic: Clock
) -> None:
    first = await kpis(routes, "window=1h")
    reads = store.reads
    assert reads == 3  # partitions, metas (the window end), then the buckets
    monotonic.now += 0.9
    assert await kpis(routes, "window=1h") is first
    assert store.reads == reads
    await kpis(routes, "window=5m")  # another query is another computation
    assert store.reads == 2 * reads
    monotonic.now += 0.2
    assert await kpis(routes, "window=1h") == first
    assert store.reads == 3 * reads


async def test_a_failing_read_is_a_500_with_the_error_not_an_exception(
    routes: Routes, store: MemoryStore
) -> None:
    store.fail = KeyError("boom")
    response = await kpis(routes, "window=1h")
    assert response.status == 500
    assert body(response) == {"error": "KeyError: 'boom'"}
    store.fail = None  # a failure is not cached: the next call answers
    assert (await kpis(routes, "window=1h")).status == 200


# /api/alerts ------------------------------------------------------------------------------

FIRING = {
    "status": "firing",
    "labels": {"alertname": "CartAbandonmentSpike", "severity": "critical", "channel": "all"},
    "annotations": {"summary": "Cart abandonment spiked"},
    "startsAt": "2027-01-15T07:58:00Z",
    "fingerprint": "f00d",
}


def payload(*alerts: dict[str, object]) -> bytes:
    return json.dumps({"version": "4", "alerts": list(alerts)}).encode()


async def post_alerts(
    routes: Routes,
    data: bytes,
    authorization: str | None = AUTH,
    content_type: str | None = JSON,
) -> Response:
    return await routes.handle(
        "POST", "/api/alerts", body=data, content_type=content_type, authorization=authorization
    )


async def test_alerts_webhook_in_firing_alerts_out(routes: Routes) -> None:
    assert body(await routes.handle("GET", "/api/alerts")) == {"source": "webhook", "alerts": []}
    posted = await post_alerts(routes, payload(FIRING))
    assert (posted.status, body(posted)) == (200, {"status": "ok", "firing": 1, "dropped": 0})
    (alert,) = body(await routes.handle("GET", "/api/alerts"))["alerts"]
    assert (alert["name"], alert["severity"], alert["fingerprint"]) == (
        "CartAbandonmentSpike",
        "critical",
        "f00d",
    )
    resolved = payload(FIRING | {"status": "resolved"})
    assert body(await post_alerts(routes, resolved))["firing"] == 0
    assert body(await routes.handle("GET", "/api/alerts"))["alerts"] == []
    # Parameters of the media type and the scheme's case do not matter.
    ok = await post_alerts(
        routes, payload(FIRING), f"bearer  {TOKEN}", "Application/JSON; charset=utf-8"
    )
    assert ok.status == 200


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "no bearer token"),
        ("", "no bearer token"),
        (f"Bearer {TOKEN}x", "wrong bearer token"),
        (f"Bearer {TOKEN[:-1]}", "wrong bearer token"),
        (f"Basic {TOKEN}", "wrong bearer token"),
        (TOKEN, "wrong bearer token"),  # no scheme
        ("Bearer", "wrong bearer token"),
    ],
)
async def test_the_webhook_needs_the_bearer_token(
    routes: Routes, authorization: str | None, message: str
) -> None:
    reads: list[int] = []

    async def reader() -> bytes:
        reads.append(1)
        return payload(FIRING)

    response = await routes.handle(
        "POST", "/api/alerts", body=reader, content_type=JSON, authorization=authorization
    )
    assert response.status == 401
    assert ("WWW-Authenticate", 'Bearer realm="storepulse-webhook"') in response.headers
    assert body(response)["error"].startswith(message)
    assert TOKEN not in response.body.decode()
    assert reads == []  # refused before its body is read
    assert body(await routes.handle("GET", "/api/alerts"))["alerts"] == []
    assert routes.stats.webhook_refused["unauthorized"] == 1


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-seq",
    ],
)
async def test_the_webhook_takes_only_application_json(
    routes: Routes, content_type: str | None
) -> None:
    # What a page on another origin can send without a CORS preflight (`fetch(url, {method:
    # "POST", mode: "no-cors", body})`) is text/plain, a form or multipart: never JSON.
    response = await post_alerts(routes, payload(FIRING), content_type=content_type)
    assert response.status == 415
    assert body(response)["error"].startswith("Content-Type must be application/json, got ")
    assert body(await routes.handle("GET", "/api/alerts"))["alerts"] == []
    assert routes.stats.webhook_refused["content_type"] == 1


async def test_without_a_token_the_webhook_is_off(
    settings: Settings, store: MemoryStore, monotonic: Clock
) -> None:
    off = settings.model_copy(update={"webhook_token": None})

    async def ping() -> bool:
        return True

    routes = Routes(
        off,
        store,  # type: ignore[arg-type]
        SnapshotReader(store, off, Clock(NOW + 55)),  # type: ignore[arg-type]
        SingleFlightCache(1.0, clock=monotonic),
        AlertBook(),
        ping,
        customers=MemoryCustomers(),  # type: ignore[arg-type]
        accounts=MemoryAccounts(),  # type: ignore[arg-type]
    )
    for authorization in (None, AUTH, "Bearer "):
        response = await post_alerts(routes, payload(FIRING), authorization)
        assert response.status == 404
        assert "the webhook is off" in body(response)["error"]
    assert body(await routes.handle("GET", "/api/alerts"))["alerts"] == []
    assert routes.stats.webhook_refused["disabled"] == 3


async def test_a_body_the_transport_cannot_read_is_its_4xx(routes: Routes) -> None:
    for status, reason in ((413, "too_large"), (408, "timeout")):

        async def reader(status: int = status, reason: str = reason) -> bytes:
            raise RequestError(status, f"cannot: {reason}", reason)

        response = await routes.handle(
            "POST", "/api/alerts", body=reader, content_type=JSON, authorization=AUTH
        )
        assert (response.status, body(response)) == (status, {"error": f"cannot: {reason}"})
        assert routes.stats.webhook_refused[reason] == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "expected an Alertmanager webhook payload"),
        (b"{not json", "Expecting property name"),
        (b"\xc3\x28", "can't decode byte 0xc3"),
        (b"[1, 2]", "expected an Alertmanager webhook payload"),
        (b'{"alerts": {"a": 1}}', "expected an Alertmanager webhook payload"),
        (b'{"alerts": [1]}', "each alert must be a JSON object"),
    ],
)
async def test_a_bad_webhook_is_a_400(routes: Routes, data: bytes, message: str) -> None:
    response = await post_alerts(routes, data)
    assert response.status == 400
    assert message in body(response)["error"]
    assert body(await routes.handle("GET", "/api/alerts"))["alerts"] == []
    assert routes.stats.webhook_refused["malformed"] == 1


async def test_webhook_refusals_and_dropped_alerts_are_counted_in_metrics(
    routes: Routes, monotonic: Clock
) -> None:
    await post_alerts(routes, payload(FIRING), authorization=None)
    await post_alerts(routes, payload(FIRING), content_type="text/plain")
    routes.alerts.limit = 1
    second = FIRING | {"fingerprint": "beef", "labels": {"alertname": "Other"}}
    assert body(await post_alerts(routes, payload(FIRING, second)))["dropped"] == 1
    text = (await routes.handle("GET", "/metrics")).body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("storepulse_exporter_")
    }
    refused = "storepulse_exporter_webhook_refused_total"
    assert samples[(refused, (("reason", "unauthorized"),))] == 1
    assert samples[(refused, (("reason", "content_type"),))] == 1
    assert samples[(refused, (("reason", "disabled"),))] == 0
    assert samples[("storepulse_exporter_alerts_dropped_total", ())] == 1
    assert samples[("storepulse_exporter_requests_shed_total", (("reason", "in_flight"),))] == 0


async def test_alerts_come_from_alertmanager_when_configured(
    settings: Settings, store: MemoryStore, monotonic: Clock, unused_tcp_port: int
) -> None:
    """--alertmanager-url: its alerts, fetched without blocking, shared for a second."""
    from aiohttp import web

    hits: list[str] = []

    async def alertmanager(request: web.Request) -> web.Response:
        hits.append(request.query_string)
        alert = {"labels": FIRING["labels"], "status": {"state": "active"}, "fingerprint": "a"}
        return web.json_response([alert, {**alert, "status": {"state": "suppressed"}}])

    app = web.Application()
    app.router.add_get("/api/v2/alerts", alertmanager)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()

    async def ping() -> bool:
        return True

    routes = Routes(
        settings,
        store,  # type: ignore[arg-type]
        SnapshotReader(store, settings, Clock(NOW + 55)),  # type: ignore[arg-type]
        SingleFlightCache(1.0, clock=monotonic),
        AlertBook(),
        ping,
        f"http://127.0.0.1:{unused_tcp_port}",
        customers=MemoryCustomers(),  # type: ignore[arg-type]
        accounts=MemoryAccounts(),  # type: ignore[arg-type]
    )
    try:
        answers = [body(await routes.handle("GET", "/api/alerts")) for _ in range(3)]
        assert answers[0]["source"] == "alertmanager"
        assert [a["name"] for a in answers[0]["alerts"]] == ["CartAbandonmentSpike"]
        assert answers == [answers[0]] * 3
        assert hits == ["active=true&silenced=false&inhibited=false"]  # one request a second
        await runner.cleanup()
        monotonic.now += 1.1
        down = body(await routes.handle("GET", "/api/alerts"))
        assert down["source"] == "webhook"
        assert down["error"].startswith("alertmanager: ")
    finally:
        await routes.aclose()
        await runner.cleanup()


# /healthz, the board, 404, 405 ------------------------------------------------------------


async def test_healthz_answers_when_redis_does(routes: Routes) -> None:
    response = await routes.handle("GET", "/healthz")
    assert (response.status, body(response)) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        ("/", "text/html; charset=utf-8", b'src="app.js"'),
        ("/index.html", "text/html; charset=utf-8", b"<title>storepulse"),
        ("/app.js", "text/javascript; charset=utf-8", b"api/kpis"),
        ("/style.css", "text/css; charset=utf-8", b"{"),
    ],
)
async def test_the_board_assets(
    routes: Routes, path: str, content_type: str, needle: bytes
) -> None:
    response = await routes.handle("GET", path)
    assert (response.status, response.content_type) == (200, content_type)
    assert needle in response.body


async def test_a_target_that_is_not_a_url_is_a_400(routes: Routes) -> None:
    response = await routes.handle("GET", "http://[::1/metrics")
    assert response.status == 400
    assert body(response)["error"].startswith("bad request target: ")


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/kpis/", "/metrics/x", "/board/app.js"])
async def test_unknown_paths_are_404(routes: Routes, path: str) -> None:
    response = await routes.handle("GET", path)
    assert response.status == 404
    assert body(response) == {"error": f"no route {path}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/metrics"),
        ("POST", "/api/kpis"),
        ("POST", "/healthz"),
        ("POST", "/"),
        ("PUT", "/api/kpis"),
        ("DELETE", "/api/alerts"),
        ("PUT", "/api/alerts"),
    ],
)
async def test_other_methods_are_405(routes: Routes, method: str, path: str) -> None:
    response = await routes.handle(method, path)
    assert response.status == 405
    assert body(response) == {"error": f"{method} not allowed on {path}"}


# Redis unavailable ------------------------------------------------------------------------


async def test_without_redis_metrics_kpis_and_health_are_503_the_board_loads(down: Routes) -> None:
    for path in ("/metrics", "/healthz", "/api/kpis?window=1h", "/api/customers", "/api/cohorts"):
        response = await down.handle("GET", path)
        assert response.status == 503, path
        assert response.content_type == "text/plain; charset=utf-8"
        assert response.body.startswith(b"redis unavailable: "), path
        assert b"connecting to 127.0.0.1" in response.body, path
    assert (await down.handle("GET", "/")).status == 200
    assert (await down.handle("GET", "/app.js")).status == 200
    assert body(await down.handle("GET", "/api/alerts"))["alerts"] == []
    # A bad query is refused before Redis is asked for the window end.
    assert (await down.handle("GET", "/api/kpis?by=user")).status == 400
