"""/api/history: the board's KPI lines from Prometheus, or from the exporter's own buckets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from streams.contract.times import iso
from streams.query.history import (
    KPI_WINDOW_S,
    ORDERS_WINDOW_S,
    RANGES,
    bucket_history,
    history_step,
    segment_history,
)
from streams.settings import Settings
from streams.store.funnel import FunnelStore

__all__ = [
    "PROMETHEUS_TIMEOUT_SECONDS",
    "RANGES",
    "PrometheusClient",
    "PrometheusError",
    "firing_periods",
    "history",
    "prometheus_history",
]

# The board asks every 10 s; a slow Prometheus must not hold the answer past the exporter's
# 8 s response limit: then the buckets answer instead.
PROMETHEUS_TIMEOUT_SECONDS = 4.0
# Prometheus' scrape interval in the stack and compose is 5-15 s: points 15 s apart at least.
_MIN_STEP_S = 15
_WINDOW = f'window="{KPI_WINDOW_S // 60}m"'
_ORDERS_WINDOW = f'window="{ORDERS_WINDOW_S // 60}m"'
_ALL = 'channel="all", device="all"'

Series = list[tuple[dict[str, str], list[list[float]]]]


class PrometheusError(RuntimeError):
    """Prometheus' query API could not be read (unreachable, slow, or refused the query)."""


class PrometheusClient:
    """Prometheus' HTTP query API, read with aiohttp on the exporter's loop."""

    def __init__(self, base_url: str, timeout: float = PROMETHEUS_TIMEOUT_SECONDS) -> None:
        self.url = base_url.rstrip("/") + "/api/v1/query_range"
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def query_range(self, expr: str, start: float, end: float, step: int) -> Series:
        """(labels, [[t, value], ...]) of every series of expr."""
        if self._session is None:
            # Created on first use, on the loop that uses it (aiohttp binds a session to one).
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        params = {"query": expr, "start": str(start), "end": str(end), "step": f"{step}s"}
        try:
            async with self._session.get(self.url, params=params) as resp:
                body = await resp.read()
        except TimeoutError:
            raise PrometheusError(f"{self.url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"{self.url}: {exc}") from None
        try:
            data = json.loads(body)
            if data["status"] != "success":
                raise PrometheusError(f"Prometheus refused {expr!r}: {data.get('error')}")
            return [
                (
                    {str(k): str(v) for k, v in item["metric"].items()},
                    [[float(t), float(v)] for t, v in item["values"]],
                )
                for item in data["data"]["result"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise PrometheusError(f"{self.url} did not answer a query result: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def firing_periods(points: Sequence[Sequence[float]], step: int) -> list[list[float]]:
    """[start, end] of each run of points at most a step apart: when an alert was firing."""
    out: list[list[float]] = []
    for t, _ in points:
        if out and t - out[-1][1] <= step * 1.01:
            out[-1][1] = t
        else:
            out.append([t, t])
    return out


def _by(series: Series, label: str) -> dict[str, list[list[float]]]:
    return {labels.get(label, ""): points for labels, points in series}


def _only(series: Series) -> list[list[float]]:
    return series[0][1] if series else []


class _Queries:
    def __init__(self, client: PrometheusClient, start: float, end: float, step: int) -> None:
        self.client, self.start, self.end, self.step = client, start, end, step

    async def __call__(self, expr: str) -> Series:
        return await self.client.query_range(expr, self.start, self.end, self.step)

    async def line(self, gauge: str, record: str, alert: str, label: str) -> dict[str, Any]:
        points = _only(await self(f"max(storepulse_{gauge}{{{_WINDOW}, {_ALL}}})"))
        threshold = _only(await self(f"max(storepulse:{record}:alert_threshold{{{_ALL}}})"))
        firing = _only(await self(f'max(ALERTS{{alertname="{alert}", alertstate="firing"}})'))
        return {
            "label": label,
            "alert": alert,
            "points": points,
            "threshold": threshold,
            "firing": firing_periods(firing, self.step),
        }


async def _prometheus_charts(q: _Queries, steps: Sequence[str]) -> dict[str, Any]:
    by_step = "max by (step)"
    dropoff = _by(
        await q(f"{by_step} (storepulse_checkout_dropoff_ratio{{{_WINDOW}, {_ALL}}})"), "step"
    )
    thresholds = _by(
        await q(f"{by_step} (storepulse:checkout_dropoff_ratio:alert_threshold{{{_ALL}}})"), "step"
    )
    firing = _by(
        await q(f'{by_step} (ALERTS{{alertname="CheckoutStepFailing", alertstate="firing"}})'),
        "step",
    )
    minutes = ORDERS_WINDOW_S / 60
    orders = _only(await q(f"max(storepulse_window_orders{{{_ORDERS_WINDOW}}}) / {minutes:g}"))
    revenue = _by(
        await q(f"max by (currency) (storepulse_window_revenue{{{_ORDERS_WINDOW}}}) / {minutes:g}"),
        "currency",
    )
    return {
        "conversion": await q.line(
            "conversion_ratio", "conversion_ratio", "ConversionDrop", "Conversion"
        ),
        "cart_abandonment": await q.line(
            "cart_abandonment_ratio",
            "cart_abandonment_ratio",
            "CartAbandonmentSpike",
            "Cart abandonment",
        ),
        "dropoff": {
            step: {
                "label": f"Drop-off at {step}",
                "alert": "CheckoutStepFailing",
                "points": dropoff.get(step, []),
                "threshold": thresholds.get(step, []),
                "firing": firing_periods(firing.get(step, []), q.step),
            }
            for step in steps
        },
        "orders_per_minute": {"label": "Orders per minute", "points": orders},
        "revenue_per_minute": {
            "label": "Revenue per minute",
            "by_currency": {c: [[t, round(v, 2)] for t, v in p] for c, p in revenue.items()},
        },
    }


async def prometheus_history(
    prometheus: PrometheusClient,
    settings: Settings,
    range_s: int,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """/api/history's lines from Prometheus, ending now (PrometheusError when it cannot)."""
    step = history_step(range_s, _MIN_STEP_S)
    # The newest point is now (the newest scrape within the lookback): the headline's numbers.
    end = float(int(clock()))
    start = end - range_s + step
    charts = await _prometheus_charts(_Queries(prometheus, start, end, step), settings.stages[1:-1])
    return {
        "source": "prometheus",
        "from": iso(int(start)),
        "to": iso(int(end)),
        "step_seconds": step,
        "window": f"{KPI_WINDOW_S // 60}m",
        "charts": charts,
    }


async def history(
    store: FunnelStore,
    settings: Settings,
    range_s: int,
    window_end_s: int,
    lines: dict[str, Any] | None,
) -> dict[str, Any]:
    """GET /api/history: Prometheus' lines when given, else the buckets'; the segment table
    always from the buckets (exact, event time). Reads Redis: run it where the store lives."""
    if lines is None:
        return await bucket_history(store, settings, window_end_s, range_s)
    return {**lines, "segments": await segment_history(store, settings, window_end_s)}
