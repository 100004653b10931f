"""`storepulse demo` end to end with the project's real rules: it backfills hours of normal
history, says when its incident begins and when to expect the page, and the page reaches
Alertmanager and the board within 5 minutes of the incident's start; then it stops cleanly."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from storepulse.local.history import HISTORY_STEP_S
from tests import harness
from tests.integration.storepulse.local.test_stack import pids, stack_settings

# Minutes long: started first, so that the run does not end waiting for it (tests/conftest.py).
pytestmark = pytest.mark.slow

TOKEN = "demo-test-webhook-token"
KPI_ALERTS = {"CartAbandonmentSpike", "CheckoutStepFailing", "ConversionDrop"}
# A payment outage early in the run, so the test waits minutes, not the default's 3 + 5 (the
# mechanism is the demo's: the backtest measures its strength-0.6 spike at 3 to 4 minutes).
INCIDENT_AT_S = 15
SPIKE = f"checkout-outage:start={INCIDENT_AT_S},duration=600,strength=1.0,step=payment"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def query(prometheus: str, expr: str, **params: str) -> list[dict[str, Any]]:
    path = "query_range" if "start" in params else "query"
    args = urllib.parse.urlencode({"query": expr, **params})
    result: list[dict[str, Any]] = get_json(f"{prometheus}/api/v1/{path}?{args}")["data"]["result"]
    return result


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of one metric's samples with those labels in an exposition text."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def clock_to_epoch(text: str, near: float) -> float:
    """HH:MM:SS (local time, as the demo prints it) as the epoch second nearest to `near`."""
    h, m, s = map(int, text.split(":"))
    day = time.localtime(near)
    base = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, h, m, s, 0, 0, -1))
    return min((base + d * 86_400 for d in (-1, 0, 1)), key=lambda t: abs(t - near))


def test_demo_backfills_history_and_pages_within_5_minutes(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path, webhook_token=TOKEN)
    prometheus = f"http://127.0.0.1:{settings.prometheus_port}"
    alertmanager = f"http://127.0.0.1:{settings.alertmanager_port}"
    board = settings.exporter_url
    proc = subprocess.Popen(
        [*harness.STOREPULSE, "demo", "--rate", "200", "--scenario", "steady", "--scenario", SPIKE],
        env=harness.env_for(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=harness.PROJECT_DIR,
    )
    lines: queue.Queue[str] = queue.Queue()
    out: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def read_until(pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "".join(out) + (
                    proc.stderr.read() if proc.stderr else ""
                )
                continue
            out.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{''.join(out)}")

    try:
        backfilled = read_until(r"history (\d\d:\d\d:\d\d) - (\d\d:\d\d:\d\d) backfilled", 120)
        begins = read_until(r"incident +checkout-outage at payment .* begins (\d\d:\d\d:\d\d)", 60)
        started = clock_to_epoch(begins.group(1), time.time())
        expected = read_until(r"page expected +by (\d\d:\d\d:\d\d) \(within 5 min\)", 5)
        assert clock_to_epoch(expected.group(1), started) == started + 300
        history_start = clock_to_epoch(backfilled.group(1), started)
        assert started - history_start >= 3 * 3_600 - 60

        # The page: Alertmanager has it, and so does the board, within 5 minutes.
        paged_at = board_at = None
        while time.time() < started + 300 and board_at is None:
            if paged_at is None:
                firing = {
                    a["labels"]["alertname"] for a in get_json(f"{alertmanager}/api/v2/alerts")
                }
                if firing & KPI_ALERTS:
                    paged_at = time.time()
            if paged_at is not None:
                shown = {a["name"] for a in get_json(f"{board}/api/alerts")["alerts"]}
                if shown & KPI_ALERTS:
                    board_at = time.time()
            time.sleep(2)
        assert paged_at is not None and board_at is not None, "".join(out)
        assert paged_at >= started  # nothing paged on the normal traffic before it
        print(f"paged {paged_at - started:.0f} s after the incident began")

        # Nothing fired before the incident: the backfilled baseline kept the start quiet.
        before = query(
            prometheus,
            'ALERTS{alertstate="firing"}',
            start=str(started - 120),
            end=str(started),
            step="5s",
        )
        assert not [r for r in before if r["metric"]["alertname"] in KPI_ALERTS], before
        # The baseline is the backfilled one: the recent 6 h, hours of it.
        baseline = query(
            prometheus,
            'count_over_time(storepulse:funnel_sessions:increase15m{stage="visit", '
            'channel="all", device="all"}[6h])',
        )
        assert float(baseline[0]["value"][1]) > 2 * 3_600 / HISTORY_STEP_S

        # The board's history is Prometheus', hours long, with the page's firing period: on
        # the conversion chart when ConversionDrop paged first (nobody orders), else on a
        # drop-off or abandonment chart (CI once saw only the former); asked again until the
        # chart's newest point (a minute apart over 6 h) holds it.
        deadline = time.monotonic() + 180
        while True:
            history = get_json(f"{board}/api/history?range=6h")
            assert history["source"] == "prometheus", history.get("error")
            kpis = history["charts"]
            # Payment failing: sessions reaching payment go no further, and nobody orders.
            charts = [kpis["conversion"], kpis["cart_abandonment"], *kpis["dropoff"].values()]
            if any(chart["firing"] for chart in charts) or time.monotonic() > deadline:
                break
            time.sleep(5)
        points = [p for p in kpis["conversion"]["points"] if p[1] is not None]
        assert points[0][0] <= history_start + 600
        assert all(chart["threshold"] for chart in charts)
        assert any(chart["firing"] for chart in charts), charts

        # Alertmanager's webhook reached the exporter with the bearer token.
        status = urllib.request.urlopen(f"{alertmanager}/metrics", timeout=10).read().decode()
        assert metric(status, "alertmanager_notifications_failed_total") == 0
        exporter = urllib.request.urlopen(f"{board}/metrics", timeout=10).read().decode()
        assert metric(exporter, "storepulse_exporter_webhook_refused_total") == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
        reader.join(timeout=10)
        errors = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    while not lines.empty():
        out.append(lines.get())
    text = "".join(out)
    assert code == 0, text + errors
    assert (
        "running          demo-worker, demo-customers-worker, demo-exporter, demo-generator" in text
    )
    # The live summary (every 10 s) shows the traffic the worker counted, and the customers the
    # customer stage counted from the facts the worker published.
    summaries = re.findall(r"^last 5 min: visits (\d+),", text, re.MULTILINE)
    assert summaries and int(summaries[-1]) > 0, text
    customers = re.findall(r"^today: customers active (\d+),", text, re.MULTILINE)
    assert customers and int(customers[-1]) > 0, text
    assert "storepulse demo: stopped" in text
    assert pids(settings.state_dir) == {}
