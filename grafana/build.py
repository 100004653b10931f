"""The storepulse Grafana dashboard, as code (grafana-foundation-sdk).

    python grafana/build.py            # writes grafana/dashboards/storepulse.json
    python grafana/build.py --check    # exits 1 when the committed JSON is not what this builds
    python grafana/build.py --out X    # writes somewhere else
    python grafana/build.py --checkout-steps address,payment --out X   # other checkout steps

The output is deterministic (sorted keys, indent 2, trailing newline), so the generated file is
committed and reviewed like code. `panel_expressions()` lists every PromQL expression of the
board with the Grafana variables substituted, for tests that parse or run them.

Conventions of the series used here (see docs/metrics.md): `channel="all"` / `device="all"`
means "not broken down", so the `channel` and `device` variables use "all" as their All value
and one breakdown at a time; `window` picks the exporter's event-time window (5m, 15m, 1h).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

# The default checkout steps (STOREPULSE_CHECKOUT_STEPS), for which the committed JSON is built.
from streams.contract.events import DEFAULT_CHECKOUT_STEPS as DEFAULT_STEPS

__all__ = [
    "DASHBOARD_PATH",
    "DASHBOARD_UID",
    "DATASOURCE_UID",
    "TITLE",
    "VARIABLE_DEFAULTS",
    "build_dashboard",
    "main",
    "panel_expressions",
    "render",
    "substitute_variables",
]

DASHBOARD_UID = "storepulse-kpis"
DATASOURCE_UID = "storepulse-prometheus"  # grafana/provisioning/datasources/prometheus.yml
TITLE = "storepulse — live KPIs"
DASHBOARD_PATH = Path(__file__).resolve().parent / "dashboards" / "storepulse.json"


# Values substituted for the Grafana variables by panel_expressions(): the dashboard's own
# defaults for its variables, and typical values for Grafana's built-in interval variables.
VARIABLE_DEFAULTS: dict[str, str] = {
    "channel": "all",
    "device": "all",
    "window": "15m",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "5m",
}

_DS = dashboard_models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
_SEGMENT = 'channel=~"$channel", device=~"$device"'
_GREEN, _ORANGE, _RED, _BLUE = "green", "orange", "red", "blue"


# Building blocks ---------------------------------------------------------------------------


def _query(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> Any:
    query = prometheus.Dataquery().datasource(_DS).expr(expr).legend_format(legend).ref_id(ref)
    return query.instant() if instant else query.range()


def _thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps(
            [dashboard_models.Threshold(value=None, color=base)]
            + [dashboard_models.Threshold(value=value, color=color) for value, color in steps]
        )
    )


def _stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    thresholds: dashboard.ThresholdsConfig,
    legend: str = "__auto",
    decimals: float = 2,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(_DS)
        .with_target(_query(expr, legend, instant=True))
        .unit(unit)
        .decimals(decimals)
        .thresholds(thresholds)
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value("not enough sessions")
        .height(4)
        .span(4)
    )


def _legend(table: bool = False) -> common.VizLegendOptions:
    legend = (
        common.VizLegendOptions()
        .show_legend(True)
        .placement(common_models.LegendPlacement.BOTTOM)
        .display_mode(
            common_models.LegendDisplayMode.TABLE if table else common_models.LegendDisplayMode.LIST
        )
    )
    return legend.calcs(["lastNotNull", "max"]) if table else legend


def _timeseries(
    title: str,
    description: str,
    targets: list[Any],
    unit: str,
    span: int = 12,
    minimum: float | None = None,
    maximum: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_DS)
        .targets(targets)
        .unit(unit)
        .line_width(2)
        .fill_opacity(10)
        .legend(_legend())
        .height(8)
        .span(span)
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    return panel


def _dashed_red(ref: str) -> tuple[Any, list[dashboard_models.DynamicConfigValue]]:
    """An override making query `ref` a dashed red line (alert thresholds)."""
    matcher = dashboard_models.MatcherConfig(id_val="byFrameRefID", options=ref)
    return matcher, [
        dashboard_models.DynamicConfigValue(
            id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
        ),
        dashboard_models.DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": _RED}
        ),
        dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ]


def _variable(name: str, label: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(
            f"One {name} at a time; All (the value `all`) is the total, not broken down by {name}."
        )
        .datasource(_DS)
        .query(f"label_values(storepulse_funnel_sessions_total, {name})")
        # The exporter may also export pre-aggregated `all` series: All already stands for them.
        .regex("/^(?!all$).+$/")
        .include_all(True)
        .all_value("all")
        .multi(False)
        .allow_custom_value(False)
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )


def _window_variable() -> dashboard.CustomVariable:
    return (
        dashboard.CustomVariable("window")
        .label("KPI window")
        .description("The exporter's event-time window for the KPI gauges.")
        .values("5m,15m,1h")
        .allow_custom_value(False)
        .current(dashboard_models.VariableOption(selected=True, text="15m", value="15m"))
        .options(
            [
                dashboard_models.VariableOption(selected=value == "15m", text=value, value=value)
                for value in ("5m", "15m", "1h")
            ]
        )
    )


# The board ---------------------------------------------------------------------------------


def _headline() -> list[Any]:
    window = f'window="$window", {_SEGMENT}'
    return [
        _stat(
            "Conversion rate",
            "Sessions that purchased / sessions that visited, in the event-time window.",
            f"storepulse_conversion_ratio{{{window}}}",
            "percentunit",
            _thresholds(_RED, (0.01, _ORANGE), (0.02, _GREEN)),
        ),
        _stat(
            "Cart abandonment",
            "1 - sessions that purchased / sessions that added to cart, in the event-time window.",
            f"storepulse_cart_abandonment_ratio{{{window}}}",
            "percentunit",
            _thresholds(_GREEN, (0.75, _ORANGE), (0.85, _RED)),
        ),
        _stat(
            "Average order value",
            "Revenue / orders in the event-time window, per currency (not broken down by segment).",
            'storepulse_average_order_value{window="$window"}',
            "none",
            _thresholds(_BLUE),
            legend="{{currency}}",
        ),
        _stat(
            "Orders / min",
            "Orders counted by the worker, per minute over the last 5 minutes.",
            f"60 * storepulse:orders:rate5m{{{_SEGMENT}}}",
            "short",
            _thresholds(_RED, (0.5, _GREEN)),
            decimals=1,
        ),
        _stat(
            "Revenue / min",
            "Revenue counted by the worker, per minute over the last 5 minutes, per currency.",
            "60 * storepulse:revenue:rate5m",
            "none",
            _thresholds(_RED, (0.01, _GREEN)),
            legend="{{currency}}",
        ),
        _stat(
            "Workers up",
            "Workers that reach Kafka and Redis (storepulse_worker_up).",
            "sum(max by (worker) (storepulse_worker_up))",
            "short",
            _thresholds(_RED, (1, _GREEN)),
            decimals=0,
        ),
    ]


def _funnel(steps: Sequence[str]) -> list[Any]:
    segment = f'window="$window", {_SEGMENT}'
    funnel = (
        bargauge.Panel()
        .title("Funnel: sessions reaching each stage")
        .description("Sessions reaching each stage in the event-time window (closed funnel).")
        .datasource(_DS)
        .targets(
            [
                _query(
                    f'storepulse_window_sessions{{stage="{stage}", {segment}}}',
                    stage,
                    ref=chr(ord("A") + index),
                    instant=True,
                )
                for index, stage in enumerate(("visit", "cart", *steps, "purchase"))
            ]
        )
        .unit("short")
        .min(0)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(_BLUE))
        .height(9)
        .span(10)
    )
    dropoff = _timeseries(
        "Drop-off per checkout step",
        "Share of the sessions reaching a step that went no further, in the event-time window.",
        [
            _query(
                f'storepulse_checkout_dropoff_ratio{{window="$window", {_SEGMENT}}}',
                "{{step}}",
            )
        ],
        "percentunit",
        span=14,
        minimum=0,
        maximum=1,
    ).height(9)
    return [funnel, dropoff]


def _alerts() -> list[Any]:
    abandonment = _timeseries(
        "Cart abandonment vs its alert threshold",
        "CartAbandonmentSpike fires when the lower confidence bound of the 15-minute (or "
        "3-minute) abandonment stays above the threshold for a minute: the baseline (the same "
        "time yesterday and a week ago, else the last 6 h) + 10 points; 95 % with no history.",
        [
            _query(f"storepulse:cart_abandonment_ratio:rate15m{{{_SEGMENT}}}", "abandonment 15m"),
            _query(
                f"storepulse:cart_abandonment_ratio:baseline{{{_SEGMENT}}}",
                "baseline",
                ref="B",
            ),
            _query(
                f"storepulse:cart_abandonment_ratio:alert_threshold{{{_SEGMENT}}}",
                "alert threshold",
                ref="C",
            ),
        ],
        "percentunit",
        minimum=0,
        maximum=1,
    )
    abandonment = abandonment.with_override(*_dashed_red("C"))
    conversion = _timeseries(
        "Conversion vs its alert threshold",
        "ConversionDrop fires when the upper confidence bound of the orders per usual visit "
        "(15 or 3 minutes; visits above the baseline's do not count) stays below the "
        "threshold for a minute: 70 % of the baseline; 0.3 % with no history.",
        [
            _query(f"storepulse:conversion_ratio:rate15m{{{_SEGMENT}}}", "conversion 15m"),
            _query(
                f"storepulse:conversion_ratio:baseline{{{_SEGMENT}}}",
                "baseline",
                ref="B",
            ),
            _query(
                f"storepulse:conversion_ratio:alert_threshold{{{_SEGMENT}}}",
                "alert threshold",
                ref="C",
            ),
        ],
        "percentunit",
        minimum=0,
    )
    conversion = conversion.with_override(*_dashed_red("C"))
    return [abandonment, conversion]


def _segments() -> list[Any]:
    by_channel = 'window="$window", channel!="all", device="all"'
    by_device = 'window="$window", channel="all", device!="all"'
    return [
        _timeseries(
            "Conversion by channel",
            "Event-time conversion per channel (segments under 20 visits are not exported).",
            [_query(f"storepulse_conversion_ratio{{{by_channel}}}", "{{channel}}")],
            "percentunit",
            span=6,
            minimum=0,
        ),
        _timeseries(
            "Conversion by device",
            "Event-time conversion per device (segments under 20 visits are not exported).",
            [_query(f"storepulse_conversion_ratio{{{by_device}}}", "{{device}}")],
            "percentunit",
            span=6,
            minimum=0,
        ),
        _timeseries(
            "Cart abandonment by channel",
            "Event-time cart abandonment per channel (segments under 20 carts are not exported).",
            [_query(f"storepulse_cart_abandonment_ratio{{{by_channel}}}", "{{channel}}")],
            "percentunit",
            span=6,
            minimum=0,
            maximum=1,
        ),
        _timeseries(
            "Cart abandonment by device",
            "Event-time cart abandonment per device (segments under 20 carts are not exported).",
            [_query(f"storepulse_cart_abandonment_ratio{{{by_device}}}", "{{device}}")],
            "percentunit",
            span=6,
            minimum=0,
            maximum=1,
        ),
    ]


def _latency_quantiles(metric: str) -> list[Any]:
    return [
        _query(
            f"histogram_quantile({q}, sum by (le) "
            f"(max without (instance) (rate({metric}_bucket[$__rate_interval]))))",
            f"p{round(q * 100)}",
            ref=chr(ord("A") + index),
        )
        for index, q in enumerate((0.5, 0.95, 0.99))
    ]


def _pipeline() -> list[Any]:
    return [
        _timeseries(
            "Events consumed / s",
            "Accepted events by type, duplicates and rejected events by reason.",
            [
                _query(
                    "sum by (type) (max without (instance) "
                    "(rate(storepulse_events_total[$__rate_interval])))",
                    "accepted {{type}}",
                ),
                _query(
                    "sum(max without (instance) "
                    "(rate(storepulse_events_duplicate_total[$__rate_interval])))",
                    "duplicate",
                    ref="B",
                ),
                _query(
                    "sum by (reason) (max without (instance) "
                    "(rate(storepulse_events_rejected_total[$__rate_interval])))",
                    "rejected {{reason}}",
                    ref="C",
                ),
            ],
            "ops",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "Consumer lag",
            "Messages waiting per partition (high-water mark of fetched data minus position).",
            [
                _query("max by (partition) (storepulse_consumer_lag)", "partition {{partition}}"),
                _query("storepulse:consumer_lag:sum", "total", ref="B"),
            ],
            "short",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "Watermark age",
            "Now minus the newest accepted event time: how far behind the KPIs are.",
            [_query("max(storepulse_watermark_age_seconds)", "watermark age")],
            "s",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "Dead-letter topic",
            "Messages sent to the dead-letter topic per second, and their share of consumed "
            "messages (DeadLetterSurge: above 5 % and 1/s for 10 minutes).",
            [
                _query(
                    "sum by (reason) (max without (instance) "
                    "(rate(storepulse_events_rejected_total[$__rate_interval])))",
                    "{{reason}}/s",
                ),
                _query("storepulse:dlq_messages:ratio_rate5m", "share of consumed", ref="B"),
            ],
            "short",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "Batch apply latency",
            "Time to apply one batch to Redis (storepulse_batch_apply_seconds).",
            _latency_quantiles("storepulse_batch_apply_seconds"),
            "s",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "Event-to-store latency",
            "From an event's arrival in Kafka to its effect in Redis "
            "(storepulse_event_to_store_seconds).",
            _latency_quantiles("storepulse_event_to_store_seconds"),
            "s",
            span=8,
            minimum=0,
        ),
    ]


def _carts() -> list[Any]:
    window = f'window="$window", {_SEGMENT}'
    value = _timeseries(
        "Value at risk vs its alert threshold",
        "Value of the carts abandoned over 15 minutes (first seen, per currency), its 6 h "
        "baseline per 15 minutes and the AbandonedCartValueSpike threshold (twice the "
        "baseline, with at least 20 carts). A cart counts once its session ended: 30 min after "
        "the shopper's last event by default.",
        [
            _query("storepulse:cart_value_abandoned:increase15m", "{{currency}} 15m"),
            _query(
                "storepulse:cart_value_abandoned:increase15m_avg6h_offset15m",
                "{{currency}} baseline",
                ref="B",
            ),
            _query(
                "storepulse:cart_value_abandoned:alert_threshold",
                "{{currency}} alert threshold",
                ref="C",
            ),
        ],
        "none",
        span=12,
        minimum=0,
    )
    value = value.with_override(*_dashed_red("C"))
    return [
        _timeseries(
            "Abandoned carts and value at risk (event time)",
            "Carts of the sessions that ended in the window without an order, and their value "
            "per currency: exact, from the event-time buckets (a late order takes a cart out).",
            [
                _query(f"storepulse_window_carts_abandoned{{{window}}}", "carts"),
                _query(
                    'storepulse_window_cart_value_abandoned{window="$window"}',
                    "value {{currency}}",
                    ref="B",
                ),
            ],
            "short",
            span=12,
            minimum=0,
        ),
        value,
        _timeseries(
            "Bounce rate",
            "Ended sessions whose events were exactly one visit: the event-time window's "
            "(exact) and the last 15 minutes of first-seen counters (not below 20 sessions).",
            [
                _query(f"storepulse_bounce_ratio{{{window}}}", "window"),
                _query(f"storepulse:bounce_ratio:rate15m{{{_SEGMENT}}}", "15m rule", ref="B"),
            ],
            "percentunit",
            span=6,
            minimum=0,
            maximum=1,
        ),
        _timeseries(
            "Time on site",
            "Event-time duration of the sessions that ended (last event - first event): the "
            "mean over 15 minutes and the median and 95th percentile of the histogram.",
            [
                _query("storepulse:session_duration_seconds:mean15m", "mean 15m"),
                *[
                    _query(
                        f"histogram_quantile({q}, sum by (le) (max without (instance) "
                        "(rate(storepulse_session_duration_seconds_bucket[$__rate_interval]))))",
                        f"p{round(q * 100)}",
                        ref=ref,
                    )
                    for q, ref in ((0.5, "B"), (0.95, "C"))
                ],
            ],
            "s",
            span=6,
            minimum=0,
        ),
        _timeseries(
            "Carts recovered / h",
            "Abandoned carts whose customer ordered within STOREPULSE_RECOVERY_WINDOW_SECONDS "
            "of their end, counted when the customer stage saw the recovery; the exact figures "
            "by bucket are in `storepulse kpis` (recovered_carts, cart_recovery_rate).",
            [_query("storepulse:carts_recovered:increase1h", "recovered")],
            "short",
            span=12,
            minimum=0,
        ),
    ]


def _customers() -> list[Any]:
    today = 'period="day"'
    return [
        _stat(
            "New customers today",
            "Customers whose first order is today (UTC): storepulse_period_customers of the "
            "current day (the customer stage; docs/semantics.md, Customers).",
            f'storepulse_period_customers{{{today}, kind="new"}}',
            "short",
            _thresholds(_BLUE),
            decimals=0,
        ),
        _stat(
            "Returning customers today",
            "Customers ordering today whose first order was before today.",
            f'storepulse_period_customers{{{today}, kind="returning"}}',
            "short",
            _thresholds(_BLUE),
            decimals=0,
        ),
        _stat(
            "Repeat customers today",
            "Customers whose second order is today.",
            f'storepulse_period_customers{{{today}, kind="repeat"}}',
            "short",
            _thresholds(_BLUE),
            decimals=0,
        ),
        _timeseries(
            "Customers of the current day",
            "Active, ordering, new, returning, repeat and retained customers of the current UTC "
            "day (the one holding the newest complete bucket); they reset at midnight.",
            [_query(f"max by (kind) (storepulse_period_customers{{{today}}})", "{{kind}}")],
            "short",
            span=12,
            minimum=0,
        ),
        _timeseries(
            "Retention vs the period before",
            "Retained / ordering customers of the period before, for the current hour, day, "
            "week and month (not exported below STOREPULSE_MIN_SAMPLE ordering customers then).",
            [_query("max by (period) (storepulse_period_retention_ratio)", "{{period}}")],
            "percentunit",
            span=8,
            minimum=0,
            maximum=1,
        ),
        _timeseries(
            "Orders by customer kind / min",
            "Orders of new customers (their first), returning ones and anonymous orders, per "
            "minute (counted once, as first seen).",
            [
                _query(
                    "60 * sum by (kind) (max without (instance) "
                    "(rate(storepulse_customer_orders_total[$__rate_interval])))",
                    "{{kind}}",
                )
            ],
            "short",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "New customers by channel / h",
            "Customers counted new per hour, by the acquisition channel of their first order.",
            [
                _query(
                    "3600 * sum by (channel) (max without (instance) "
                    "(rate(storepulse_customers_new_total[$__rate_interval])))",
                    "{{channel}}",
                )
            ],
            "short",
            span=8,
            minimum=0,
        ),
        _timeseries(
            "Customer stage",
            "Facts the session workers published and the customer stage applied per second, "
            "and the facts waiting (lag): the customer figures trail it.",
            [
                _query(
                    "sum(rate(storepulse_worker_facts_published_total[$__rate_interval]))",
                    "published / s",
                ),
                _query(
                    "sum by (kind) (max without (instance) "
                    "(rate(storepulse_customer_facts_total[$__rate_interval])))",
                    "applied {{kind}} / s",
                    ref="B",
                ),
                _query(
                    "sum(max without (instance) (storepulse_customer_consumer_lag))",
                    "waiting",
                    ref="C",
                ),
            ],
            "short",
            span=24,
            minimum=0,
        ),
    ]


def _accounts() -> list[Any]:
    window = "the 30 days of whole hours ending with the current hour"
    return [
        _stat(
            "Active accounts, 30 days",
            f"Accounts with an accepted event in {window} (docs/semantics.md, Accounts).",
            "sum(max without (instance) (storepulse_accounts_active))",
            "short",
            _thresholds(_BLUE),
            decimals=0,
        ),
        _stat(
            "Ordering accounts, 30 days",
            f"Accounts with a counted order in {window}.",
            "sum(max without (instance) (storepulse_accounts_ordering))",
            "short",
            _thresholds(_BLUE),
            decimals=0,
        ),
        _stat(
            "Accounts at risk",
            "Accounts with 3 orders at least, quiet for longer than STOREPULSE_AT_RISK_FACTOR "
            "times the median gap between them, at the end of the current hour.",
            "sum(storepulse:accounts_at_risk:max)",
            "short",
            _thresholds(_GREEN, (1, _ORANGE)),
            decimals=0,
        ),
        _timeseries(
            "Accounts at risk by tier",
            "At-risk accounts per tier (KeyAccountsQuiet watches the tiers of "
            "STOREPULSE_KEY_TIERS against their mean of the 7 days before yesterday).",
            [_query("storepulse:accounts_at_risk:max", "{{tier}}")],
            "short",
            span=12,
            minimum=0,
        ),
        _timeseries(
            "Active and ordering accounts by tier",
            f"Accounts active and ordering in {window}, per tier (unassigned: not in the "
            "directory).",
            [
                _query("max by (tier) (storepulse_accounts_active)", "active {{tier}}"),
                _query(
                    "max by (tier) (storepulse_accounts_ordering)", "ordering {{tier}}", ref="B"
                ),
            ],
            "short",
            span=12,
            minimum=0,
        ),
        _timeseries(
            "Usage rate by tier",
            "Ordering users / active users of each tier's accounts over the 30 days: the share "
            "of the accounts' users who use the site to order (not exported below "
            "STOREPULSE_MIN_SAMPLE active users).",
            [_query("max by (tier) (storepulse_account_usage_ratio)", "{{tier}}")],
            "percentunit",
            span=12,
            minimum=0,
            maximum=1,
        ),
        _timeseries(
            "Revenue by tier, 30 days",
            f"Revenue of each tier's accounts in {window}, per currency.",
            [
                _query(
                    "max by (tier, currency) (storepulse_account_revenue)",
                    "{{tier}} {{currency}}",
                )
            ],
            "short",
            span=12,
            minimum=0,
        ),
        _timeseries(
            "Accounts at risk by sales rep",
            "At-risk accounts per sales rep (none: accounts without one). Served only with "
            "STOREPULSE_EXPORT_REP_LABELS=true and at most 200 reps in the directory.",
            [_query("max by (sales_rep) (storepulse_rep_accounts_at_risk)", "{{sales_rep}}")],
            "short",
            span=12,
            minimum=0,
        ),
    ]


def build_dashboard(checkout_steps: Sequence[str] = DEFAULT_STEPS) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict, its funnel panel for these checkout steps."""
    builder = (
        dashboard.Dashboard(TITLE)
        .uid(DASHBOARD_UID)
        .description(
            "Exact event-time e-commerce KPIs from the storepulse exporter, its recording rules "
            "and alert thresholds. Generated by grafana/build.py: edit that, not this JSON."
        )
        .tags(["storepulse", "kpi", "e-commerce"])
        .editable()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(_variable("channel", "Channel"))
        .with_variable(_variable("device", "Device"))
        .with_variable(_window_variable())
        .annotation(
            dashboard.AnnotationQuery()
            .name("Firing alerts")
            .datasource(_DS)
            .enable(True)
            .icon_color(_RED)
            .expr('ALERTS{alertstate="firing"}')
        )
    )
    sections: list[tuple[str, list[Any]]] = [
        ("Headline KPIs", _headline()),
        ("Funnel", _funnel(checkout_steps)),
        ("Alerts and their thresholds (15 min vs the baseline)", _alerts()),
        ("By channel and device", _segments()),
        ("Sessions and carts", _carts()),
        ("Customers (the customer stage)", _customers()),
        ("Accounts (B2B)", _accounts()),
        ("Pipeline health", _pipeline()),
    ]
    panel_id = 0
    for title, panels in sections:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return encoded


def render(
    data: Mapping[str, Any] | None = None, checkout_steps: Sequence[str] = DEFAULT_STEPS
) -> str:
    """Deterministic JSON text of the dashboard."""
    return (
        json.dumps(
            build_dashboard(checkout_steps) if data is None else data,
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
        )
        + "\n"
    )


# Expressions, for tests -------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute_variables(expr: str, values: Mapping[str, str] | None = None) -> str:
    """expr with every Grafana variable replaced; an unknown variable raises KeyError."""
    table = {**VARIABLE_DEFAULTS, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        return table[match.group(1) or match.group(2)]

    return _VARIABLE.sub(replace, expr)


def panel_expressions(
    data: Mapping[str, Any] | None = None, values: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation, variables substituted.

    `where` is "<panel title> [<refId>]" or "annotation <name>"; `values` overrides
    VARIABLE_DEFAULTS (e.g. {"channel": ".*"}).
    """
    board = build_dashboard() if data is None else data
    found: list[tuple[str, str]] = []
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            where = f"{panel['title']} [{target['refId']}]"
            found.append((where, substitute_variables(target["expr"], values)))
    for annotation in board.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            found.append(
                (f"annotation {annotation['name']}", substitute_variables(annotation["expr"]))
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the storepulse Grafana dashboard JSON.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed JSON differs from what this builds",
    )
    parser.add_argument(
        "--out", type=Path, default=DASHBOARD_PATH, help=f"output file (default {DASHBOARD_PATH})"
    )
    parser.add_argument(
        "--checkout-steps",
        type=lambda text: tuple(s.strip() for s in text.split(",") if s.strip()),
        default=DEFAULT_STEPS,
        metavar="A,B,...",
        help="STOREPULSE_CHECKOUT_STEPS of the deployment, for the funnel panel "
        f"(default {','.join(DEFAULT_STEPS)}: the committed JSON)",
    )
    args = parser.parse_args(argv)
    text = render(checkout_steps=args.checkout_steps)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(
                f"{args.out} is out of date: run `python grafana/build.py` and commit it",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
