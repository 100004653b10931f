"""The `storepulse exporter` subcommand: serve /metrics, /api/kpis, /api/alerts and the board."""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys

from streams.settings import Settings

__all__ = ["register"]


def _redis_problem(settings: Settings) -> str | None:
    """Why Redis does not answer right now, as a line of `storepulse.cli.errors`, or None."""
    from redis.exceptions import RedisError

    from storepulse.cli.errors import describe
    from streams.redact import redact_text
    from streams.store.client import connect, ping

    async def probe() -> None:
        client = connect(settings)
        try:
            await ping(client)
        finally:
            await client.aclose()

    try:
        asyncio.run(probe())
    except (RedisError, OSError) as exc:
        failure = describe(exc, settings)
        return failure.text if failure else redact_text(str(exc))
    return None


# Open connections the exporter may hold (its Limits.max_connections is 1,000): the soft
# limit of file descriptors is raised towards this, never above the hard limit.
_WANTED_FDS = 4_096
_SWITCH_INTERVAL_S = 0.001


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _WANTED_FDS if hard == resource.RLIM_INFINITY else min(_WANTED_FDS, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _cmd_exporter(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.cli.signals import wait_for_stop
    from streams.exporter import Exporter
    from streams.loop import use_event_loop

    use_event_loop(settings.event_loop)
    _raise_fd_limit()
    # The HTTP loop thread hands the GIL back and forth with the Redis loop thread, which
    # parses a scrape's replies for ~100 ms: at the default 5 ms switch interval every
    # request waiting on it paid up to 5 ms per hand-over. 1 ms: p99 at 500 requests/s from
    # 50 clients 50 -> 11 ms, and no less throughput (4,100-4,300 requests/s either way).
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    exporter = Exporter(
        settings,
        host=args.host,
        port=args.port,
        alertmanager_url=args.alertmanager_url,
        cache_seconds=args.cache_seconds,
        prometheus_url=args.prometheus_url,
    )
    try:
        exporter.start()
        url = exporter.url
        print(
            f"storepulse exporter: live board {url}/  metrics {url}/metrics  "
            f"KPIs {url}/api/kpis?window=15m  (topic {settings.topic}, "
            f"redis {settings.redis_url_shown})",
            flush=True,
        )
        problem = _redis_problem(settings)
        if problem is not None:
            # It keeps serving and answers as soon as Redis does (stateless: nothing to reload).
            print(
                f"storepulse exporter: {problem}; until then /metrics, /api/kpis and /healthz "
                "answer 503",
                file=sys.stderr,
                flush=True,
            )
        wait_for_stop()  # SIGINT, SIGTERM or SIGHUP raise Stopped (storepulse.cli.main)
    finally:
        exporter.stop()
        print("storepulse exporter: stopped", file=sys.stderr, flush=True)


def _cache_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("the cache may hold a snapshot 0 to 1 s, no longer")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    exporter = sub.add_parser(
        "exporter",
        help="serve KPIs to Prometheus (/metrics), the KPI API and the built-in live board",
        description=(
            "Reads the worker's funnel counters in Redis at scrape time and serves, on "
            "STOREPULSE_EXPORTER_HOST:STOREPULSE_EXPORTER_PORT (port 0 picks a free one):\n"
            "  /                 the live board (headline KPIs, funnel, drop-off, firing alerts)\n"
            "  /metrics          Prometheus metrics (catalogue: docs/metrics.md)\n"
            "  /api/kpis         the JSON of `storepulse kpis --json`: ?window=15m (ending at the "
            "newest complete bucket) or ?from=ISO&to=ISO, optional &by=channel|device|country\n"
            "  /api/history      ?range=1h|6h|24h: the board's KPI lines, thresholds, firing "
            "periods and segment table (from --prometheus-url, else the buckets)\n"
            "  /api/alerts       GET: firing alerts; POST: Alertmanager's webhook, only with\n"
            "                    STOREPULSE_WEBHOOK_TOKEN set, as Authorization: Bearer <token>\n"
            "  /healthz          200 when Redis answers\n"
            "Stateless: run several against one Redis. Details: docs/exporter.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    exporter.add_argument(
        "--host", default=None, help="listen address (default STOREPULSE_EXPORTER_HOST)"
    )
    exporter.add_argument(
        "--port",
        type=int,
        default=None,
        help="listen port, 0 for a free one (default STOREPULSE_EXPORTER_PORT)",
    )
    exporter.add_argument(
        "--alertmanager-url",
        default=None,
        metavar="URL",
        help="read firing alerts for the board from this Alertmanager's API "
        "(e.g. http://127.0.0.1:19093) instead of only the webhooks it sends to /api/alerts "
        "(which need STOREPULSE_WEBHOOK_TOKEN)",
    )
    exporter.add_argument(
        "--prometheus-url",
        default=None,
        metavar="URL",
        help="draw the board's history (1 h, 6 h, 24 h) from this Prometheus's query API "
        "(e.g. http://127.0.0.1:19090): the KPI lines, thresholds and firing periods it "
        "recorded; without it, or when it does not answer, from the exporter's own event-time "
        "buckets in Redis",
    )
    exporter.add_argument(
        "--cache-seconds",
        type=_cache_seconds,
        default=1.0,
        help="scrapes within this time share one Redis read (0..1, default 1)",
    )
    exporter.set_defaults(handler=_cmd_exporter)
