"""Accounts end to end on one stack: the directory loaded by the CLI (a bad file changes
nothing), the API equal to the CLI on the same range, and the board in Debian's Chromium
showing the API's top accounts, accounts at risk, reps and search results."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Page, sync_playwright

from streams.exporter import Exporter
from tests import harness
from tests.integration.streams.exporter.test_board import ARTIFACTS, CHROMIUM_ARGS
from tests.integration.streams.exporter.test_exporter import get
from tests.integration.streams.store.test_customers import NOW_MS, customer_settings, run_stages
from tests.reference import dumps, event

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TIERS = ("gold", "silver", "bronze")
REPS = ("rita", "sam", "")  # "": no rep


def b2b_trace(rng: random.Random) -> list[dict[str, Any]]:
    """14 accounts over 40 days: each with its users and cadence; every third stops ordering
    10 days before the end (at risk); a few anonymous and B2C sessions besides."""
    events: list[dict[str, Any]] = []
    n = 0
    for a in range(14):
        account = f"acct-{a:02d}"
        users = [f"{account}-u{k}" for k in range(1 + a % 4)]
        cadence = (2 + a % 5) * DAY_MS
        stop = NOW_MS - 10 * DAY_MS if a % 3 == 0 else NOW_MS
        t = NOW_MS - 40 * DAY_MS + rng.randrange(DAY_MS)
        while t < NOW_MS - 9 * HOUR_MS:
            n += 1
            sid = f"s{n}"
            who = {"account_id": account, "user_id": rng.choice(users)}
            events.append(event("visit", f"{sid}-v", sid, t, **who))
            if t < stop:
                cents = rng.randrange(1_000, 90_000)
                events.append(
                    event(
                        "purchase",
                        f"{sid}-p",
                        sid,
                        t + 60_000,
                        order_id=f"o-{sid}",
                        revenue=f"{cents // 100}.{cents % 100:02d}",
                        **who,
                    )
                )
            t += cadence + rng.randrange(-HOUR_MS, HOUR_MS)
    for k in range(5):
        events.append(event("visit", f"b{k}", f"b2c{k}", NOW_MS - (k + 10) * HOUR_MS, user_id="u"))
    return events


def directory_csv(path: Path, bad: bool = False) -> Path:
    lines = ["account_id,name,tier,sales_rep"]
    for a in range(12):  # acct-12 and acct-13 stay unassigned
        lines.append(f"acct-{a:02d},Company {a},{TIERS[a % 3]},{REPS[a % 3]}")
    lines.append("acct-90,Never Seen Ltd,gold,sam")
    if bad:
        lines.insert(3, "acct-00,Again,gold,rita")  # line 4 repeats line 2's id
    path.write_text("\n".join(lines) + "\n")
    return path


def api(url: str, path: str) -> Any:
    status, _, body = get(url + path)
    assert status == 200, (path, body)
    return json.loads(body)


def cli(s: Any, *args: str) -> Any:
    return json.loads(harness.run_cli(["accounts", *args, "--json"], s).stdout)


def board_rows(page: Page, table: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.evaluate(
        """sel => [...document.querySelectorAll(
                sel + ' tr[data-account], ' + sel + ' tr[data-rep]')]
            .map(tr => Object.fromEntries([...tr.querySelectorAll('td')]
                .map(td => [td.dataset.field, td.textContent])))""",
        table,
    )
    return rows


def shown_money(single: str | None, by_currency: dict[str, str]) -> str:
    return f"{single} {next(iter(by_currency))}" if by_currency and single else (single or "–")


def assert_accounts_shown(rows: list[dict[str, str]], accounts: list[dict[str, Any]]) -> None:
    assert [r["account_id"] for r in rows] == [a["account_id"] for a in accounts]
    for r, a in zip(rows, accounts, strict=True):
        assert r["name"] == (a["name"] or "–") and r["tier"] == a["tier"]
        assert r["sales_rep"] == (a["sales_rep"] or "–")
        assert int(r["orders"]) == a["orders"] and int(r["active_users"]) == a["active_users"]
        assert r["revenue"] == shown_money(a["revenue"], a["revenue_by_currency"])


def test_the_api_and_the_board_show_what_the_cli_says(make_settings, tmp_path: Path) -> None:
    s = customer_settings(make_settings)
    events = b2b_trace(random.Random(12))

    async def fill() -> None:
        _, _, client, _ = await run_stages(s, [dumps(e) for e in events])
        await client.aclose()

    asyncio.run(fill())
    good = directory_csv(tmp_path / "directory.csv")
    loaded = json.loads(harness.run_cli(["accounts", "load", str(good), "--json"], s).stdout)
    assert loaded == {"file": str(good), "rows": 13, "upsert": False, "directory": 13}
    bad = harness.run_cli(
        ["accounts", "load", str(directory_csv(tmp_path / "bad.csv", bad=True))], s, check=False
    )
    assert bad.returncode == 2, bad.stderr
    assert "line 4: account 'acct-00' is on line 2 too; nothing was loaded" in bad.stderr
    errors: list[str] = []
    with Exporter(s, port=0) as exporter, sync_playwright() as pw:
        url = exporter.url
        top = api(url, "/api/accounts?days=30")
        window = ["--from", top["from"], "--to", top["to"]]
        assert top["totals"]["accounts_in_directory"] == 13  # the bad file changed nothing
        assert top["totals"]["at_risk_accounts"] >= 3 and len(top["accounts"]) == 14
        assert cli(s, "report", *window) == top
        risky = api(url, "/api/accounts?days=30&at_risk=true")
        assert risky["accounts"] and all(a["at_risk"] for a in risky["accounts"])
        assert cli(s, "report", "--at-risk", *window) == risky
        reps = api(url, "/api/reps?days=30")
        assert [r["sales_rep"] for r in reps["reps"]][-1] is None
        assert cli(s, "reps", *window) == reps
        one = api(url, f"/api/accounts/{quote('acct-01')}?from={top['from']}&to={top['to']}")
        assert one["account"]["name"] == "Company 1" and one["users"]
        assert cli(s, "show", "acct-01", *window) == one
        found = api(url, "/api/accounts?days=30&q=company%201&top=20")
        assert {a["account_id"] for a in found["accounts"]} == {"acct-01", "acct-10", "acct-11"}

        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1400})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector("#accounts[data-loaded]", timeout=15_000)
            board_top = api(url, "/api/accounts?days=30&top=10")
            assert (
                page.text_content("#accounts-range") == f"{board_top['from']} – {board_top['to']}"
            )
            totals = page.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('[data-accounts]')]
                    .map(el => [el.dataset.accounts, el.textContent]))"""
            )
            t = board_top["totals"]
            assert totals["active_accounts"] == str(t["active_accounts"])
            assert totals["at_risk_accounts"] == str(t["at_risk_accounts"])
            assert totals["revenue"] == shown_money(t["revenue"], t["revenue_by_currency"])
            assert_accounts_shown(board_rows(page, "#top-accounts"), board_top["accounts"])
            board_risk = api(url, "/api/accounts?days=30&at_risk=true&top=10")
            assert_accounts_shown(board_rows(page, "#risk-accounts"), board_risk["accounts"])
            shown_reps = board_rows(page, "#reps")
            assert [r["sales_rep"] for r in shown_reps] == [
                r["sales_rep"] or "(no rep)" for r in reps["reps"]
            ]
            for r, want in zip(shown_reps, reps["reps"], strict=True):
                assert int(r["accounts"]) == want["accounts"]
                assert int(r["at_risk_accounts"]) == want["at_risk_accounts"]
                assert r["revenue"] == shown_money(want["revenue"], want["revenue_by_currency"])

            page.fill("#account-q", "company 1")
            page.click("#account-search button[type=submit]")
            page.wait_for_selector("#accounts[data-search='company 1']", timeout=10_000)
            assert_accounts_shown(board_rows(page, "#top-accounts"), found["accounts"])
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "board-accounts.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
