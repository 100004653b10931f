"""The metric families storepulse serves, the catalogue of docs/metrics.md, and PromQL's series.

Tests compare these three instead of keeping lists of metric names of their own: a metric
renamed in the code, in the docs, in a rule or in the dashboard turns one of them red.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Metric

from streams.contract.periods import PERIODS
from streams.exporter.account_metrics import AccountSnapshot, account_families
from streams.exporter.customer_metrics import CurrentPeriod, CustomerSnapshot, customer_families
from streams.exporter.metrics import ExporterStats, stats_families
from streams.exporter.metrics import families as exporter_metric_families
from streams.exporter.snapshot import Snapshot
from streams.query.accounts import TierFigures
from streams.settings import Settings
from streams.store.customers import PeriodSums
from streams.store.directory import FeedTotals
from streams.store.funnel import PartitionMeta
from streams.worker import metrics as worker_metrics
from tests.harness import PROJECT_DIR

METRICS_MD = PROJECT_DIR / "docs" / "metrics.md"
PREFIX = "storepulse_"
# Series a family of each type exposes (text format), as a query names them.
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


@dataclass(frozen=True)
class Family:
    """One served (or documented) metric family."""

    name: str  # as documented and queried: counters with their _total
    type: str  # counter, gauge, histogram
    labels: frozenset[str] | None  # None: served without a sample, so its labels are unknown

    @property
    def series(self) -> frozenset[str]:
        base = self.name.removesuffix("_total")
        return frozenset(base + suffix for suffix in _SUFFIXES[self.type])


Families = dict[str, Family]


def from_metrics(
    metrics: Iterable[Metric], labels: Mapping[str, Iterable[str]] | None = None
) -> Families:
    """Families of prometheus_client Metric objects (collected or parsed), storepulse_* only.

    Labels come from the samples; `labels` gives them for families served without one.
    """
    out: Families = {}
    for metric in metrics:
        if not metric.name.startswith(PREFIX):
            continue
        name = _name(metric)
        seen = {k for sample in metric.samples for k in sample.labels if k != "le"}
        known = (labels or {}).get(name)
        if metric.samples:
            found: frozenset[str] | None = frozenset(seen)
        else:
            found = None if known is None else frozenset(known)
        out[name] = Family(name, metric.type, found)
    return out


def parse_exposition(text: str) -> Families:
    """The families of a /metrics body (text format)."""
    return from_metrics(text_string_to_metric_families(text))


def _name(metric: Metric) -> str:
    return metric.name + ("_total" if metric.type == "counter" else "")


def worker_families() -> Families:
    """What a `storepulse worker` serves: streams.worker.metrics.create on a fresh registry."""
    created = worker_metrics.create(CollectorRegistry())
    metrics: list[Metric] = []
    labels: dict[str, tuple[str, ...]] = {}
    for field in dataclasses.fields(created):
        wrapper = getattr(created, field.name)
        assert isinstance(wrapper, MetricWrapperBase), field.name
        (metric,) = wrapper.collect()
        metrics.append(metric)
        # A labelled metric serves no sample before its first child; prometheus_client keeps
        # its label names only on the metric object.
        labels[_name(metric)] = wrapper._labelnames
    return from_metrics(metrics, labels)


def rich_snapshot(settings: Settings) -> Snapshot:
    """A snapshot in which every exporter family has samples (every ratio above min sample)."""
    now = 1_800_000_000.0
    channel, device = settings.channels[0], settings.devices[0]
    n = 4 * settings.min_sample
    window = {f"s|{stage}|{channel}|{device}": n - k for k, stage in enumerate(settings.stages)}
    window |= {f"o|EUR|{channel}|{device}": n, f"r|EUR|{channel}|{device}": n * 100_000}
    window |= {f"e|{channel}|{device}": n, f"eb|{channel}|{device}": 1}
    window |= {f"ka|{channel}|{device}": 2, f"kv|EUR|{channel}|{device}": 250_000}
    totals = {
        "ev|visit": n,
        "dup": 1,
        "rej|schema": 1,
        f"f|visit|{channel}|{device}": n,
        f"o|{channel}|{device}": n,
        "r|EUR": n * 100_000,
        "topic_resets": 0,
        f"se|{channel}|{device}": n,
        f"sb|{channel}|{device}": 1,
        f"ka|{channel}|{device}": 2,
        "kv|EUR": 250_000,
        "sd|0": 1,
        "sd|4": n - 1,
        "sds": 90_000 * (n - 1),
    }
    meta = PartitionMeta(
        partition=0,
        offset=99,
        watermark_ms=int(now * 1_000),
        highwater=120,
        applied_ms=int(now * 1_000),
    )
    return Snapshot(
        now_s=now,
        totals=totals,
        metas=[meta],
        end_s=int(now),
        windows={"5m": window, "15m": window, "1h": window},
    )


def rich_customer_snapshot(settings: Settings) -> CustomerSnapshot:
    """A customer snapshot in which every customer family has samples."""
    n = 4 * settings.min_sample
    sums = PeriodSums(active=n, ordering=n, new=1, retained=n // 2, counts={"o": n, "rp": 1})
    meta = PartitionMeta(partition=0, offset=9, watermark_ms=0, highwater=12, applied_ms=0)
    return CustomerSnapshot(
        totals={"o|new": 1, "r|EUR": 10_000, "fx|a": 1, "kr": 1},
        metas=[meta],
        periods={p: CurrentPeriod(0, sums, sums, 1) for p in PERIODS},
    )


def rich_account_snapshot() -> AccountSnapshot:
    """An account snapshot in which every account family has samples (by tier and by rep)."""
    figures = TierFigures(accounts=4, active=3, ordering=2, at_risk=1, users=100, ordering_users=50)
    figures.revenue["EUR"] = 10_000
    groups = {"gold": figures, "unassigned": figures}
    return AccountSnapshot(1_800_000_000, groups, {"rita": figures}, FeedTotals(1, {"schema": 1}))


def exporter_families(settings: Settings | None = None) -> Families:
    """What the exporter serves, from streams.exporter.metrics (no Redis): the families of a
    snapshot and the exporter process's own counters."""
    settings = settings or Settings()
    snapshot = rich_snapshot(settings)
    return from_metrics(
        [
            *exporter_metric_families(snapshot, settings),
            *customer_families(rich_customer_snapshot(settings), snapshot.totals, settings),
            *account_families(rich_account_snapshot(), settings),
            *stats_families(ExporterStats(), 0),
        ]
    )


# docs/metrics.md -----------------------------------------------------------------------------

_NAME = re.compile(r"`([a-z_:*]+)`")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def documented(text: str | None = None) -> Families:
    """The catalogue: every table row of "## Exporter metrics" naming a storepulse_* metric.

    A table's type is its Type column, else its heading's ("Counters", "... gauges"); labels
    are the backticked names in its Labels column.
    """
    text = METRICS_MD.read_text() if text is None else text
    section = text.split("\n## Exporter metrics", 1)[1].split("\n## ", 1)[0]
    out: Families = {}
    heading = ""
    columns: list[str] | None = None
    for line in section.splitlines():
        if line.startswith("### "):
            heading, columns = line[4:].lower(), None
            continue
        if not line.startswith("|"):
            columns = None
            continue
        cells = _cells(line)
        if columns is None:
            columns = [c.lower() for c in cells]
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the |---| row
        row = dict(zip(columns, cells, strict=True))
        names = _NAME.findall(row["metric"])
        assert len(names) == 1, f"docs/metrics.md: one metric per row: {line}"
        if not names[0].startswith(PREFIX):
            continue  # process_*: prometheus_client's own
        if "type" in row:
            kind = row["type"]
        elif "counter" in heading:
            kind = "counter"
        elif "gauge" in heading:
            kind = "gauge"
        else:
            raise AssertionError(f"docs/metrics.md: no type for {names[0]} under {heading!r}")
        assert names[0] not in out, f"docs/metrics.md lists {names[0]} twice"
        out[names[0]] = Family(names[0], kind, frozenset(_NAME.findall(row["labels"])))
    return out


# PromQL ----------------------------------------------------------------------------------------

_SERIES = re.compile(r"\bstorepulse[_:][a-z0-9_:]*")
_SELECTOR = re.compile(r"\b(storepulse_[a-z0-9_]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def series_used(expr: str) -> set[str]:
    """Every storepulse series or recording rule an expression names."""
    return set(_SERIES.findall(expr))


def labels_matched(expr: str) -> list[tuple[str, str]]:
    """(series, label) of every label matcher on a storepulse_* series."""
    return [
        (name, label)
        for name, inner in _SELECTOR.findall(expr)
        for label in _MATCHER.findall(inner)
    ]


# Prometheus adds these to every scraped series (the scrape job and target).
TARGET_LABELS = {"job", "instance"}


def check_expressions(
    exprs: Iterable[tuple[str, str]], served: Families, records: set[str]
) -> set[str]:
    """Assert every series and label matcher of (where, expr) is served or recorded.

    Returns the names the expressions use, so that a caller can check it is not empty.
    """
    by_series = {s: f for f in served.values() for s in f.series}
    used: set[str] = set()
    for where, expr in exprs:
        for name in series_used(expr):
            assert name in by_series or name in records, f"{where}: {name} is not served"
            used.add(name)
        for name, label in labels_matched(expr):
            family = by_series[name]
            allowed = family.labels
            assert allowed is not None, f"{where}: the labels of {name} are unknown"
            extra = {"le"} if family.type == "histogram" else set()
            extra |= TARGET_LABELS
            assert label in allowed | extra, f"{where}: {name} has no label {label!r}"
    return used
