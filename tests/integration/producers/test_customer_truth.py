"""The generator's customer ground truth through the real stack: `storepulse generate` writes
three days of customers coming back, B2B accounts ordering through several buyers and logins at
the cart; `replay --keep-time` publishes them; both stages count them; the daily report equals
the manifest's customer days, and the accounts report (with the directory written beside the
manifest) its accounts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streams.contract.times import iso, parse_ts
from tests import harness
from tests.integration.streams.worker.test_customer_stage import stages, wait_both_stages

pytestmark = pytest.mark.slow

DAY_S = 86_400


def test_the_daily_customer_report_equals_the_manifest(make_settings, tmp_path: Path) -> None:
    settings = make_settings(partitions=3, customer_partitions=2)
    # Three days of event time ending an hour ago, at ~0.015 lines/s: ~4,000 lines; few users
    # and accounts, customers back after ~12 h half the time, so that every day has new,
    # returning, repeat and retained customers.
    start_s = int(time.time()) - 3 * DAY_S
    trace, manifest_path = tmp_path / "days.jsonl", tmp_path / "manifest.json"
    harness.run_cli(
        [
            "generate",
            *("--out", str(trace), "--manifest", str(manifest_path)),
            *("--start", iso(start_s), "--duration", str(3 * DAY_S - 3_600)),
            *("--rate", "0.015", "--seed", "11", "--cvr", "0.15", "--abandonment", "0.5"),
            *("--users", "80", "--returning-share", "0.5", "--b2b-share", "0.15"),
            *("--accounts", "6", "--repurchase-probability", "0.5"),
            *("--repurchase-interval", "12h", "--login-at-cart", "0.3"),
            *("--duplicate-share", "0.02", "--invalid-share", "0.01"),
        ],
        settings,
    )
    published = harness.run_cli(
        ["replay", str(trace), "--keep-time", "--speed", "max", "--create-topics", "--json"],
        settings,
    )
    lines = json.loads(published.stdout)["published"]
    manifest = json.loads(manifest_path.read_text())
    assert lines == manifest["totals"]["lines"]
    days = manifest["customers"]["days"]
    assert len(days) >= 3
    workers = stages(settings, tmp_path)
    try:
        wait_both_stages(settings, lines, workers)
    finally:
        for w in workers:
            w.stop()
    first = parse_ts(days[0]["start"])
    to = first + len(days) * DAY_S * 1_000
    report = harness.run_cli(
        ["customers", "report", "--period", "day", "--json", "--from", str(first), "--to", str(to)],
        settings,
    )
    rows = json.loads(report.stdout)["rows"]
    assert [r["start"] for r in rows] == [d["start"] for d in days]
    for want, row in zip(days, rows, strict=True):
        assert {k: row[k] for k in want} == want, want["start"]
    for name in ("returning_customers", "repeat_customers", "retained_customers"):
        assert sum(d[name] for d in days[1:]) > 0, name
    assert sum(d["anonymous_orders"] for d in days) > 0
    assert manifest["totals"]["orders"] == sum(r["orders"] + r["anonymous_orders"] for r in rows)

    # The accounts: the directory file beside the manifest loaded, then every account's figures
    # over the run's whole hours as the manifest has them (slowing accounts at risk included).
    accounts = manifest["accounts"]
    assert accounts["directory"] == str(tmp_path / "manifest.accounts.csv")
    harness.run_cli(["accounts", "load", accounts["directory"]], settings)
    got = json.loads(
        harness.run_cli(
            [
                *("accounts", "report", "--from", accounts["from"], "--to", accounts["to"]),
                *("--top", "1000", "--json"),
            ],
            settings,
        ).stdout
    )
    by_id = {a["account_id"]: a for a in got["accounts"]}
    want_rows = accounts["per_account"]
    assert len(want_rows) >= 3 and set(by_id) == {a["account_id"] for a in want_rows}
    for want in want_rows:
        row = by_id[want["account_id"]]
        for name in ("tier", "sales_rep", "sessions", "active_users", "orders", "revenue"):
            assert row[name] == want[name], (want["account_id"], name)
        for name in ("first_order_at", "last_order_at", "at_risk"):
            assert row[name] == want[name], (want["account_id"], name)
    totals = accounts["totals"]
    assert got["totals"]["active_accounts"] == totals["active_accounts"]
    assert got["totals"]["ordering_accounts"] == totals["ordering_accounts"]
    assert got["totals"]["at_risk_accounts"] == totals["at_risk_accounts"]
    assert got["totals"]["accounts_in_directory"] == totals["in_directory"]
