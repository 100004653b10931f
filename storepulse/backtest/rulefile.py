"""The rendered rules file, read as Prometheus reads it: recording rules in levels, alerts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["AlertRule", "RecordRule", "RuleFile", "levels", "parse_rules", "prom_duration_s"]

_RECORDED = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*(?::[a-zA-Z0-9_]+)+")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800, "y": 31_536_000}


def prom_duration_s(text: str) -> float:
    """Seconds of a Prometheus duration: 1m, 6d23h30m, 90s."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a Prometheus duration")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


@dataclass(frozen=True)
class RecordRule:
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_s: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleFile:
    records: tuple[RecordRule, ...]
    alerts: tuple[AlertRule, ...]


def parse_rules(text: str, group: str) -> RuleFile:
    """The recording and alerting rules of one group, in file order."""
    data: Any = yaml.safe_load(text)
    groups = {g["name"]: g for g in data.get("groups", [])}
    if group not in groups:
        raise ValueError(f"the rules have no group {group!r} (found: {', '.join(groups)})")
    records: list[RecordRule] = []
    alerts: list[AlertRule] = []
    for rule in groups[group]["rules"]:
        labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
        if "record" in rule:
            records.append(RecordRule(rule["record"], rule["expr"], labels))
        else:
            for_s = prom_duration_s(str(rule["for"])) if rule.get("for") else 0.0
            alerts.append(AlertRule(rule["alert"], rule["expr"], for_s, labels))
    return RuleFile(tuple(records), tuple(alerts))


def depends_on(expr: str, recorded: set[str]) -> set[str]:
    """The recorded series an expression reads."""
    return {name for name in _RECORDED.findall(expr) if name in recorded}


def levels(records: Sequence[RecordRule]) -> list[list[RecordRule]]:
    """Recording rules in dependency levels: level 0 reads only scraped series, level k reads
    recordings of lower levels. Backfilled level by level, each one queryable by the next."""
    recorded = {r.record for r in records}
    needs: dict[str, set[str]] = {}
    for rule in records:
        needs.setdefault(rule.record, set()).update(depends_on(rule.expr, recorded))
    level: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> int:
        if name in trail:
            raise ValueError(f"recording rules depend on each other: {' -> '.join(trail)}")
        if name not in level:
            below = [visit(n, (*trail, name)) for n in needs[name] - {name}]
            level[name] = 1 + max(below, default=-1)
        return level[name]

    for name in needs:
        visit(name, ())
    out: list[list[RecordRule]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for rule in records:
        out[level[rule.record]].append(rule)
    return out
