"""The built-in live board in Debian's Chromium: the numbers shown are the API's, and they move."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

from playwright.sync_api import Page, sync_playwright

from streams.exporter import Exporter
from tests.integration.streams.exporter.test_exporter import (
    WEBHOOK_TOKEN,
    fill,
    get,
    grid,
    hour_end,
    post,
)

__all__ = ["hour_end"]  # the fixture, shared with test_exporter

from tests import harness
from tests.harness import PROJECT_DIR as ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def shown(page: Page) -> dict[str, Any]:
    """Every number the board shows, as text."""
    data: dict[str, Any] = page.evaluate(
        """() => ({
            kpis: Object.fromEntries([...document.querySelectorAll('[data-kpi]')]
                .map(el => [el.dataset.kpi, el.textContent])),
            funnel: Object.fromEntries([...document.querySelectorAll('#funnel li')]
                .map(li => [li.dataset.name, li.querySelector('.num').textContent])),
            dropoff: Object.fromEntries([...document.querySelectorAll('#dropoff li')]
                .map(li => [li.dataset.name, li.querySelector('.num').textContent])),
            alerts: [...document.querySelectorAll('#alerts li[data-alert]')]
                .map(li => li.dataset.alert),
            range: document.querySelector('#range').textContent,
        })"""
    )
    return data


def percent(text: str) -> float | None:
    return None if text == "–" else float(text.removesuffix("%")) / 100


def assert_same_as_api(board: dict[str, Any], api: dict[str, Any]) -> None:
    # Two decimals of a percentage: the shown value is within 0.005 points of the API's.
    for name in ("conversion_rate", "cart_abandonment_rate", "bounce_rate"):
        got, want = percent(board["kpis"][name]), api[name]
        assert (got is None) == (want is None), name
        if got is not None:
            assert abs(got - want) <= 0.00005 + 1e-12, (name, got, want)
    assert int(board["kpis"]["orders"].replace(",", "")) == api["orders"]
    # Money is exact: the API's string and its currency.
    assert board["kpis"]["revenue"] == f"{api['revenue']} EUR"
    assert board["kpis"]["average_order_value"] == f"{api['average_order_value']} EUR"
    assert {k: int(v.replace(",", "")) for k, v in board["funnel"].items()} == api["sessions"]
    assert list(board["funnel"]) == list(api["sessions"])  # funnel order
    assert set(board["dropoff"]) == set(api["step_dropoff"])
    for step, text in board["dropoff"].items():
        assert abs((percent(text) or 0) - api["step_dropoff"][step]) <= 0.00005 + 1e-12
    assert board["range"] == f"{api['from']} – {api['to']}"
    # Sessions and carts: the sessions whose end is in the window.
    assert api["ended_sessions"] > 0 and api["abandoned_carts"] > 0
    assert int(board["kpis"]["abandoned_carts"].replace(",", "")) == api["abandoned_carts"]
    assert board["kpis"]["abandoned_value"] == f"{api['abandoned_value']} EUR"
    assert float(board["kpis"]["pages_per_session"]) == round(api["pages_per_session"], 2)
    seconds = round(api["average_session_seconds"])
    assert board["kpis"]["average_session_seconds"] == (
        f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    )


def assert_carts_history(page: Page, url: str) -> None:
    """The carts panel: 8 slices of 15 minutes ending at the window end, each the API's."""
    page.wait_for_selector("body[data-carts]", timeout=10_000)
    rows = page.evaluate(
        """() => [...document.querySelectorAll('#carts-history li')]
            .map(li => [li.dataset.name, li.dataset.carts, li.dataset.value])"""
    )
    now = api(url, "window=15m")
    assert [r[0] for r in rows][-1] == now["from"] and len(rows) == 8
    ends = [r[0] for r in rows[1:]] + [now["to"]]
    for (start, carts, value), end in zip(rows, ends, strict=True):
        got = api(url, f"from={start}&to={end}")
        assert int(carts) == got["abandoned_carts"], start
        assert value == got["abandoned_value"] + (" EUR" if got["abandoned_carts"] else "")
    assert sum(int(r[1]) for r in rows) > 0
    day = api(url, f"to={now['to']}&window=1d")
    rate = page.get_attribute('[data-carts="cart_recovery_rate"]', "data-value")
    want = day["cart_recovery_rate"]
    assert (rate == "") if want is None else (float(rate or "nan") == want)


def api(url: str, query: str) -> dict[str, Any]:
    status, _, body = get(f"{url}/api/kpis?{query}")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


# A firing CartAbandonmentSpike as Alertmanager's webhook posts it.
SPIKE = {
    "status": "firing",
    "labels": {"alertname": "CartAbandonmentSpike", "severity": "critical"},
    "annotations": {"summary": "Cart abandonment spike (channel=all, device=all)"},
    "fingerprint": "f00d",
}


def test_the_board_shows_the_apis_numbers_alerts_and_refreshes(make_settings, hour_end) -> None:
    s = make_settings(webhook_token=WEBHOOK_TOKEN)
    asyncio.run(fill(s, grid(hour_end, 3)))
    spike = SPIKE
    requested: list[str] = []
    errors: list[str] = []
    with Exporter(s, port=0) as exporter, sync_playwright() as pw:
        url = exporter.url
        assert post(f"{url}/api/alerts", {"alerts": [spike]})[0] == 200
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector("body[data-loaded]", timeout=10_000)
            fifteen = api(url, "window=15m")
            assert fifteen["sessions"]["visit"] == 3 * 3 * 15  # 3 sessions x 3 partitions x 15 min
            board = shown(page)
            assert_same_as_api(board, fifteen)
            assert board["alerts"] == ["CartAbandonmentSpike"]
            assert_carts_history(page, url)
            assert page.text_content("#alert-count") == "1"

            page.click("button[data-window='1h']")
            page.wait_for_selector("body[data-window='1h']", timeout=10_000)
            assert_same_as_api(shown(page), api(url, "window=1h"))

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)

            # New events complete the next bucket: the window slides and the board follows.
            later = [(p, (hour_end + 10) * 1_000) for p in range(3) for _ in range(30)]
            later += [(p, (hour_end + 61) * 1_000) for p in range(3)]
            # Playwright's sync API runs a loop in this thread: write from another one.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(
                    asyncio.run, fill(s, later, seed=2, prefix="t", first_offset=10_000)
                ).result()
            time.sleep(1.05)  # the exporter shares a /api/kpis answer for 1 s
            moved = api(url, "window=1h")
            assert moved["to"] != fifteen["to"]
            page.wait_for_function(
                "to => document.querySelector('#range').textContent.endsWith(to)",
                arg=moved["to"],
                timeout=10_000,
            )
            assert_same_as_api(shown(page), api(url, "window=1h"))
        finally:
            browser.close()
    assert not errors, errors
    # Everything came from the exporter itself: no CDN, no other origin.
    assert requested
    assert all(r.startswith(url + "/") for r in requested), requested
    assert (ARTIFACTS / "board.png").stat().st_size > 10_000


# A page on another origin, as an ops laptop's browser might open: it posts forged alerts to
# the exporter the way a page can without the exporter's consent (no-cors: no preflight, a
# text/plain body, no Authorization header), a forged "resolved" for the real alert's
# fingerprint, and a flood.
EVIL_PAGE = b"""<!doctype html><title>evil</title><script>
async function forge(exporter, fingerprint) {
  const alert = (name, fp, status) => ({status: status, fingerprint: fp,
    labels: {alertname: name, severity: "critical"}, annotations: {summary: "forged"}});
  const send = (alerts) => fetch(exporter + "/api/alerts", {method: "POST", mode: "no-cors",
    body: JSON.stringify({version: "4", alerts: alerts})});
  await send([alert("CartAbandonmentSpike", "forged", "firing")]);
  await send([alert("DeadLetterSurge", fingerprint, "resolved")]);
  for (let i = 0; i < 20; i++) {
    await send(Array.from({length: 50}, (_, j) => alert("Forged", "f" + i + "-" + j, "firing")));
  }
  return "sent";
}
</script>"""


class EvilSite(harness.LocalHTTP):
    """A one-page web server on another port of localhost: another origin than the exporter."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(EVIL_PAGE)))
                self.end_headers()
                self.wfile.write(EVIL_PAGE)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler, "/")


def test_a_page_on_another_origin_cannot_forge_or_clear_the_boards_alerts(
    make_settings, hour_end
) -> None:
    s = make_settings(webhook_token=WEBHOOK_TOKEN)
    asyncio.run(fill(s, grid(hour_end, 1)))
    real = {
        "status": "firing",
        "labels": {"alertname": "DeadLetterSurge", "severity": "warning"},
        "annotations": {"summary": "Dead letters surging"},
        "fingerprint": "d1e",
    }
    with Exporter(s, port=0) as exporter, EvilSite() as evil, sync_playwright() as pw:
        url = exporter.url
        assert post(f"{url}/api/alerts", {"alerts": [real]})[0] == 200  # Alertmanager's
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            sent: list[str] = []
            page.on(
                "request",
                lambda r: (
                    sent.append(r.headers.get("content-type", ""))
                    if r.url.endswith("/api/alerts") and r.method == "POST"
                    else None
                ),
            )
            page.goto(evil.url)
            assert page.evaluate("([u, f]) => forge(u, f)", [url, "d1e"]) == "sent"
            # Every forged post reached the exporter, as text/plain without a token.
            assert len(sent) == 22
            assert all(t.startswith("text/plain") for t in sent), sent
            assert exporter.stats.webhook_refused["unauthorized"] == 22

            page.goto(url + "/")
            page.wait_for_selector("body[data-loaded]", timeout=10_000)
            assert shown(page)["alerts"] == ["DeadLetterSurge"]
            assert page.text_content("#alert-count") == "1"
        finally:
            browser.close()
