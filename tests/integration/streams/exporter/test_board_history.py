"""The board's history in Debian's Chromium: each chart's newest point is /api/kpis' number,
from the exporter's own buckets and from a real Prometheus; laptop and phone screenshots."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

from streams.contract.times import iso
from streams.exporter import Exporter
from tests import harness
from tests.integration.streams.exporter.test_board import ARTIFACTS, CHROMIUM_ARGS, SPIKE, api
from tests.integration.streams.exporter.test_exporter import (
    WEBHOOK_TOKEN,
    fill,
    get,
    grid,
    hour_end,
    post,
)

__all__ = ["hour_end"]  # the fixture

LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def charts(page: Page) -> dict[str, dict[str, str]]:
    """Every chart's data attributes: its newest point, firing periods, threshold points."""
    data: dict[str, dict[str, str]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('figure[data-chart]')]
            .map(f => [f.dataset.chart, {...f.dataset,
                lines: f.querySelectorAll('svg .kpi').length,
                width: f.getBoundingClientRect().width}]))"""
    )
    return data


def latest(chart: dict[str, Any]) -> float:
    return float(chart["latest"])


def assert_latest_points_are_the_apis(page: Page, url: str, steps: list[str]) -> None:
    shown = charts(page)
    fifteen, five = api(url, "window=15m"), api(url, "window=5m")
    assert set(shown) == {
        "conversion",
        "cart_abandonment",
        *(f"dropoff:{s}" for s in steps),
        "orders_per_minute",
        "revenue_per_minute:EUR",
    }
    # The 15-minute ratios are the same numbers (the data attribute keeps every digit).
    assert latest(shown["conversion"]) == fifteen["conversion_rate"]
    assert latest(shown["cart_abandonment"]) == fifteen["cart_abandonment_rate"]
    for step in steps:
        assert latest(shown[f"dropoff:{step}"]) == fifteen["step_dropoff"][step], step
    # Orders and revenue per minute are the last 5 minutes' / 5.
    assert latest(shown["orders_per_minute"]) == five["orders"] / 5
    revenue = Decimal(five["revenue"]) / 5
    assert abs(Decimal(shown["revenue_per_minute:EUR"]["latest"]) - revenue) <= Decimal("0.005")
    for chart in shown.values():
        assert chart["lines"] >= 1, chart


def open_board(browser: Browser, url: str, errors: list[str], requested: list[str]) -> Page:
    """The board at laptop width, once its KPIs and history have loaded."""
    page = browser.new_page(viewport=LAPTOP)
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("body[data-loaded][data-history]", timeout=15_000)
    return page


def screenshots(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-laptop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    # Redrawn at the phone's width: no chart and no part of the page wider than the screen.
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure[data-chart] svg')]"
        ".every(s => s.getBoundingClientRect().width <= 390)",
        timeout=5_000,
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    for shot in ("laptop", "phone"):
        assert (ARTIFACTS / f"{name}-{shot}.png").stat().st_size > 20_000


def test_history_from_the_buckets_ends_at_the_apis_numbers(make_settings, hour_end) -> None:
    s = make_settings(webhook_token=WEBHOOK_TOKEN)
    asyncio.run(fill(s, grid(hour_end, 4)))
    spike = SPIKE | {"startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour_end - 600))}
    errors: list[str] = []
    requested: list[str] = []
    with Exporter(s, port=0) as exporter, sync_playwright() as pw:
        url = exporter.url
        assert post(f"{url}/api/alerts", {"alerts": [spike]})[0] == 200
        status, _, body = get(f"{url}/api/history?range=1h")
        assert status == 200
        history = json.loads(body)
        assert history["source"] == "buckets" and history["range"] == "1h"
        assert get(f"{url}/api/history?range=2h")[0] == 400
        # Thresholds from the buckets' baseline (the 6 h before each window, here the hour
        # of data): baseline + 10 points for abandonment, as the rules draw it.
        line = history["charts"]["cart_abandonment"]
        assert len(line["points"]) == len(line["threshold"]) == 60
        # Every point with a value has its threshold (a floor at least); the newest one is
        # baseline + 10 points, the baseline being the 45 minutes of data before the window
        # (no day-old hour: the recent 6 h).
        pairs = zip(line["points"], line["threshold"], strict=True)
        assert all(t[1] is not None for p, t in pairs if p[1])
        drawn = sum(1 for t in line["threshold"] if t[1] is not None)
        assert 40 < drawn < 60
        before = api(url, f"from={iso(hour_end - 3_600)}&to={iso(hour_end - 900)}")
        assert line["threshold"][-1] == [hour_end, before["cart_abandonment_rate"] + 0.10]
        rows = history["segments"]
        scores = [r["score"] for r in rows if r["score"] is not None]
        assert scores and scores == sorted(scores, reverse=True)  # worst first
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = open_board(browser, url, errors, requested)
            assert page.text_content("#history-source") == "from the exporter's event-time buckets"
            assert_latest_points_are_the_apis(page, url, list(s.stages[1:-1]))
            # The alert firing now is marked from its start; the others have nothing to mark.
            shown = charts(page)
            assert shown["cart_abandonment"]["firing"] == "1"
            assert shown["conversion"]["firing"] == "0"
            assert int(shown["cart_abandonment"]["thresholdPoints"]) == drawn
            table = page.eval_on_selector_all("#segments tbody tr", "rs => rs.length")
            assert table == len(rows) == len(s.channels) * len(s.devices)
            page.click("button[data-range='6h']")
            page.wait_for_selector("body[data-range='6h']", timeout=10_000)
            assert_latest_points_are_the_apis(page, url, list(s.stages[1:-1]))
            screenshots(page, "board-history")
        finally:
            browser.close()
    assert not errors, errors
    assert all(r.startswith(url + "/") for r in requested), requested  # no CDN


def test_history_from_prometheus_ends_at_the_apis_numbers(
    make_settings, hour_end, tmp_path: Path
) -> None:
    s = make_settings()
    asyncio.run(fill(s, grid(hour_end, 4)))
    port = harness.free_port()
    prometheus = harness.start_prometheus(tmp_path, [f"127.0.0.1:{port}"])
    errors: list[str] = []
    requested: list[str] = []
    try:
        with (
            Exporter(s, port=port, prometheus_url=f"http://{prometheus.address}") as exporter,
            sync_playwright() as pw,
        ):
            url = exporter.url
            # Prometheus scrapes every second: wait until its newest sample is the gauges'.
            deadline = time.monotonic() + 30
            while True:
                history = json.loads(get(f"{url}/api/history?range=1h")[2])
                charts = history["charts"]
                points = charts["conversion"]["points"]
                # Every series scraped, revenue too (its first scrape may come a second later).
                revenue = charts["revenue_per_minute"]["by_currency"]
                if history["source"] == "prometheus" and points and revenue:
                    break
                assert time.monotonic() < deadline, history
                time.sleep(0.5)
            assert history["step_seconds"] == 15 and "error" not in history
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = open_board(browser, url, errors, requested)
                assert page.text_content("#history-source") == "from Prometheus"
                # A Prometheus seconds old may lack a series at the page's own range's steps
                # (its first scrape after the step): the board redraws its history every 10 s.
                page.wait_for_selector(
                    'figure[data-chart="revenue_per_minute:EUR"]', timeout=25_000
                )
                # And every chart with a newest point: CI saw a dropoff series a scrape later.
                page.wait_for_function(
                    """() => [...document.querySelectorAll('figure[data-chart]')]
                        .every(f => f.dataset.latest !== '')""",
                    timeout=25_000,
                )
                assert_latest_points_are_the_apis(page, url, list(s.stages[1:-1]))
                screenshots(page, "board-prometheus")
            finally:
                browser.close()
    finally:
        prometheus.stop()
    assert not errors, errors
    assert all(r.startswith(url + "/") for r in requested), requested
