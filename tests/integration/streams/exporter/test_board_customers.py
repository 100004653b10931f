"""The live board's customers panel in Debian's Chromium: today's new, returning and repeat
customers, yesterday's retention and the weekly cohort triangle are /api/customers' and
/api/cohorts' numbers, for customers counted by both stages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.sync_api import sync_playwright

from streams.exporter import Exporter
from tests.integration.streams.exporter.test_board import CHROMIUM_ARGS
from tests.integration.streams.exporter.test_exporter import get
from tests.integration.streams.store.test_customers import NOW_MS, customer_settings, run_stages
from tests.reference import dumps, event

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# NOW_MS is a Thursday: today (D) and the two days before are in one ISO week, D-9 in the one
# before. Who orders when (an account orders through two of its users):
ORDERS = {
    -9: [{"user_id": "u-g"}],
    -2: [{"user_id": "u-a"}, {"user_id": "u-c"}, {"user_id": "u-f"}],
    -1: [
        {"user_id": "u-a"},
        {"user_id": "u-b"},
        {"account_id": "acct-1", "user_id": "b-1"},
        {"user_id": "u-c"},
        {},
    ],
    0: [
        {"user_id": "u-a"},
        {"account_id": "acct-1", "user_id": "b-2"},
        {"user_id": "u-d"},
        {"user_id": "u-e"},
        {"user_id": "u-g"},
        {},
    ],
}


def trace() -> list[bytes]:
    out = []
    for day, buyers in ORDERS.items():
        for n, who in enumerate(buyers):
            sid = f"d{day + 10}-{n}"
            ts = NOW_MS + day * DAY_MS - 2 * HOUR_MS + n * 60_000
            out.append(dumps(event("visit", f"{sid}-v", sid, ts, **who)))
            out.append(dumps(event("purchase", f"{sid}-p", sid, ts + 30_000, **who)))
    return out


def api(url: str, path: str) -> Any:
    status, _, body = get(url + path)
    assert status == 200, body
    return json.loads(body)


def test_the_customers_panel_shows_the_apis_numbers(make_settings) -> None:
    s = customer_settings(make_settings)

    async def fill() -> None:
        *_, client, _ = await run_stages(s, trace())
        await client.aclose()

    asyncio.run(fill())
    errors: list[str] = []
    with Exporter(s, port=0) as exporter, sync_playwright() as pw:
        url = exporter.url
        days = api(url, "/api/customers?period=day&last=2")["rows"]
        cohorts = api(url, "/api/cohorts?period=week&last=8")["cohorts"]
        today, yesterday = days[-1], days[-2]
        # The trace's figures, so that the comparison below compares something.
        assert (today["new_customers"], today["returning_customers"]) == (2, 3)
        assert today["repeat_customers"] == 2  # acct-1 and u-g (u-a's third order is not one)
        assert yesterday["retention_rate"] == 2 / 3  # u-a and u-c of u-a, u-c, u-f
        assert [c["customers"] for c in cohorts] == [1, 7]
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1200})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector("#customers[data-state='ok']", timeout=15_000)
            shown = page.evaluate(
                """() => ({
                    values: Object.fromEntries([...document.querySelectorAll('[data-customers]')]
                        .map(el => [el.dataset.customers, el.dataset.value])),
                    day: document.querySelector('#customers-day').textContent,
                    cohorts: [...document.querySelectorAll('#cohorts tr[data-cohort]')].map(tr =>
                        ({start: tr.dataset.cohort,
                          size: tr.children[1].textContent,
                          cells: [...tr.querySelectorAll('td.cell')]
                              .map(td => Number(td.dataset.value))})),
                })"""
            )
        finally:
            browser.close()
    assert not errors, errors
    assert shown["day"] == today["start"][:10]
    for name in ("new_customers", "returning_customers", "repeat_customers"):
        assert shown["values"][name] == str(today[name]), name
    assert float(shown["values"]["retention_rate"]) == yesterday["retention_rate"]
    assert shown["cohorts"] == [
        {"start": c["start"], "size": str(c["customers"]), "cells": c["retention"]} for c in cohorts
    ]
