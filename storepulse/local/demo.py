"""`storepulse demo`: the local stack, worker, exporter and synthetic traffic in the foreground."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

from storepulse.local.procs import ManagedProcess, ProcessSpec, ServiceError, http_ready
from storepulse.local.stack import LocalStack
from streams.redact import redact_text
from streams.settings import Settings

__all__ = ["DEMO_PREFIX", "demo_processes", "run_demo"]

DEMO_PREFIX = "demo-"
# Steady traffic with an abandonment spike from minute 3 to minute 13, so the board moves
# and CartAbandonmentSpike can page while someone watches.
DEFAULT_SCENARIOS = ("steady", "abandonment-spike:start=180,duration=600,strength=0.6")
# Customers come back within minutes, not the model's week, so that the customers panel shows
# returning and repeat customers while someone watches.
DEMO_CUSTOMERS = ("--repurchase-probability", "0.4", "--repurchase-interval", "3m")
# With a few hours of backfilled history (the recent 6 h baseline) such a spike pages within
# this long of its start: `storepulse backtest` measures 3-5 min for strength >= 0.5.
PAGE_WITHIN_S = 300


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "storepulse.cli", *args]


def demo_processes(
    settings: Settings,
    rate: float,
    scenarios: Sequence[str] | None = None,
    duration: float | None = None,
) -> list[ManagedProcess]:
    """Both stages, the exporter and the generator of the demo, as managed child processes."""
    url = f"{settings.exporter_url}/healthz"
    gen = ["generate", "--rate", str(rate), *DEMO_CUSTOMERS]
    for scenario in scenarios or DEFAULT_SCENARIOS:
        gen += ["--scenario", scenario]
    if duration:
        gen += ["--duration", str(duration)]
    specs = [
        ProcessSpec(f"{DEMO_PREFIX}worker", _cli("worker"), lambda: True, "worker"),
        ProcessSpec(
            f"{DEMO_PREFIX}customers-worker", _cli("customers-worker"), lambda: True, "worker"
        ),
        # The board reads the stack's Alertmanager itself: it works with or without the
        # webhook (STOREPULSE_WEBHOOK_TOKEN), and shows what Alertmanager shows.
        ProcessSpec(
            f"{DEMO_PREFIX}exporter",
            _cli(
                "exporter",
                "--alertmanager-url",
                f"http://127.0.0.1:{settings.alertmanager_port}",
                "--prometheus-url",
                f"http://127.0.0.1:{settings.prometheus_port}",
            ),
            http_ready(url),
            url,
        ),
        ProcessSpec(f"{DEMO_PREFIX}generator", _cli(*gen), lambda: True, "kafka"),
    ]
    return [ManagedProcess(spec, settings.state_dir) for spec in specs]


def _summary(settings: Settings) -> str:
    from streams.contract.periods import next_start
    from streams.query.customers import current_start, customer_report
    from streams.query.kpis import kpi_report
    from streams.query.window import range_ending_now
    from streams.store.client import connect
    from streams.store.customers import CustomerStore
    from streams.store.funnel import FunnelStore

    async def read() -> str:
        client = connect(settings)
        try:
            # The last 5 minutes up to the newest complete bucket, as `storepulse kpis --last 5m`.
            store = FunnelStore(client, settings)
            from_s, to_s = await range_ending_now(store, settings, 300)
            report = await kpi_report(store, settings, from_s, to_s)
            # Today (UTC) as `storepulse customers report --period day`.
            day = await current_start(store, settings, "day")
            customers = CustomerStore(client, settings)
            today = await customer_report(
                customers, store, settings, "day", day, next_start("day", day)
            )
        finally:
            await client.aclose()
        cvr, ab = report["conversion_rate"], report["cart_abandonment_rate"]
        row = today["rows"][0]
        return (
            f"last 5 min: visits {report['sessions']['visit']}, "
            f"carts {report['sessions']['cart']}, "
            f"orders {report['orders']}, revenue {report['revenue']}, "
            f"CVR {'-' if cvr is None else f'{cvr:.2%}'}, "
            f"abandonment {'-' if ab is None else f'{ab:.2%}'}\n"
            f"today: customers active {row['active_customers']}, new {row['new_customers']}, "
            f"returning {row['returning_customers']}, repeat {row['repeat_customers']}, "
            f"orders {row['orders']} (+{row['anonymous_orders']} anonymous)"
        )

    try:
        return asyncio.run(read())
    except Exception as exc:  # the summary is best effort; the demo keeps running
        return redact_text(f"(KPIs unavailable at {settings.redis_url_shown}: {exc})")


def _backfill(
    settings: Settings, stack: LocalStack, started: Sequence[str], hours: float, rate: float
) -> None:
    """A few hours of normal history into the stack's Prometheus, unless it has some."""
    from storepulse.local.history import backfill_history, has_history

    url = f"http://127.0.0.1:{settings.prometheus_port}"
    if has_history(url, hours):
        print(
            f"storepulse demo: Prometheus already holds storepulse data of the last {hours:g} h: "
            "no history backfilled",
            flush=True,
        )
        return
    print(
        f"storepulse demo: backfilling {hours:g} h of normal history into Prometheus ...",
        flush=True,
    )
    began = time.monotonic()
    result = backfill_history(settings, stack.prometheus_data_dir, int(time.time()), hours, rate)
    if "prometheus" in started:
        stack.restart("prometheus")  # ours: it loads the blocks now rather than within a minute
        note = "loaded"
    else:
        note = "Prometheus loads it within a minute"
    print(
        f"storepulse demo: history {_clock(result.start_s)} - {_clock(result.end_s)} backfilled "
        f"({result.samples:,} samples, {time.monotonic() - began:.0f} s); {note}",
        flush=True,
    )


def _clock(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch_s))


def _incidents(settings: Settings, scenarios: Sequence[str], started_s: float) -> str:
    """When each incident of the generator's scenarios begins, and by when it should page."""
    from producers.scenarios import parse_scenario
    from storepulse.backtest.score import TARGETS

    lines = []
    for spec in scenarios:
        s = parse_scenario(spec, settings.checkout_steps)
        if s.name not in TARGETS:
            continue  # steady traffic, surges and tracking loss must not page
        begins = started_s + s.start_s
        until = "" if s.duration_s is None else f" until {_clock(begins + s.duration_s)}"
        where = f" at {s.step}" if s.step else ""
        lines.append(
            f"  incident         {s.name}{where} (strength {s.strength:g}) begins "
            f"{_clock(begins)}{until}\n"
            f"  page expected    by {_clock(begins + PAGE_WITHIN_S)} (within "
            f"{PAGE_WITHIN_S // 60} min): {' or '.join(TARGETS[s.name])}, on Alertmanager and "
            "the board\n"
        )
    return "".join(lines)


def run_demo(
    settings: Settings,
    rate: float = 200.0,
    scenarios: Sequence[str] | None = None,
    duration: float | None = None,
    history_hours: float = 0.0,
) -> int:
    """Run until duration ends or a stop signal unwinds it (Stopped, from storepulse.cli.main).

    Whatever ends it, the `finally` stops the children and the stack services this run started,
    also halfway through starting them; the output may go to a reader that has gone (main).
    """
    stack = LocalStack(settings)
    started_stack: list[str] = []  # filled as they start: an interrupted start knows what to stop
    children = demo_processes(settings, rate, scenarios, duration)
    try:
        print("storepulse demo: starting the local stack ...", flush=True)
        stack.up(started=started_stack)
        stack.create_topics()
        if history_hours > 0:
            _backfill(settings, stack, started_stack, history_hours, rate)
        for child in children:
            child.start(timeout=30)
        generator_started = time.time()
        print(
            "\nstorepulse demo is running (Ctrl-C stops it):\n"
            f"  live board       {settings.exporter_url}/\n"
            f"  metrics          {settings.exporter_url}/metrics\n"
            f"  KPIs API         {settings.exporter_url}/api/kpis?window=15m\n"
            f"  customers API    {settings.exporter_url}/api/customers?period=day&last=7\n"
            f"  Prometheus       http://127.0.0.1:{settings.prometheus_port}/alerts\n"
            f"  Alertmanager     http://127.0.0.1:{settings.alertmanager_port}/\n"
            "  exact KPIs       storepulse kpis --last 15m [--by channel]\n"
            "  customers        storepulse customers report --period hour --from <ISO> --to <ISO>\n"
            f"  logs             {settings.state_dir.resolve() / 'logs'}\n"
            f"  running          {', '.join(c.spec.name for c in children) or 'stack only'}\n"
            + _incidents(settings, scenarios or DEFAULT_SCENARIOS, generator_started),
            flush=True,
        )
        deadline = time.monotonic() + duration if duration else None
        next_summary = time.monotonic() + 10
        while deadline is None or time.monotonic() < deadline:
            for child in children:
                if child.pid() is None and child.spec.name != f"{DEMO_PREFIX}generator":
                    raise ServiceError(
                        f"{child.spec.name} stopped; log {child.log_file}:\n{child.log_tail()}"
                    )
            if time.monotonic() >= next_summary:
                print(_summary(settings), flush=True)
                next_summary += 10
            time.sleep(0.2)
    finally:
        print("\nstorepulse demo: stopping ...", flush=True)
        for child in reversed(children):
            child.stop(timeout=20)
        if started_stack:
            stack.down(started_stack)
        print("storepulse demo: stopped", flush=True)
    return 0
