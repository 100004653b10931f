"""The run manifest: seed, arguments, scenarios and the realized ground truth per minute."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from producers.accounts import AccountBook
from producers.config import TrafficConfig
from producers.scenarios import Scenario
from producers.truth import BUCKET_MS, GroundTruth
from streams.contract.times import format_ts
from streams.settings import Settings

__all__ = [
    "MANIFEST_VERSION",
    "build_manifest",
    "directory_path",
    "read_manifest",
    "write_manifest",
    "write_text",
]

MANIFEST_VERSION = 1
_HOUR_MS = 3_600_000


def build_manifest(
    *,
    seed: int,
    arguments: dict[str, Any],
    settings: Settings,
    sink: str,
    start_ms: int,
    config: TrafficConfig,
    scenarios: Sequence[Scenario],
    truth: GroundTruth,
    report: dict[str, Any],
    accounts: AccountBook | None = None,
    directory: str | None = None,
) -> dict[str, Any]:
    """A JSON-ready manifest; see docs/producers.md for every field."""
    placed = []
    for sc in scenarios:
        item = sc.describe()
        item["start"] = format_ts(start_ms + round(sc.start_s * 1_000))
        item["end"] = (
            None
            if sc.duration_s is None
            else format_ts(start_ms + round((sc.start_s + sc.duration_s) * 1_000))
        )
        placed.append(item)
    return {
        "version": MANIFEST_VERSION,
        "tool": "storepulse generate",
        "seed": seed,
        "arguments": arguments,
        "settings": {
            "topic": settings.topic,
            "checkout_steps": list(settings.checkout_steps),
            "channels": list(settings.channels),
            "devices": list(settings.devices),
        },
        "model": {
            "rate": config.rate,
            "cvr": config.cvr,
            "abandonment": config.abandonment,
            "cart_rate": round(config.cart_rate, 6),
            "pass_rates": [round(p, 6) for p in config.pass_rates()],
            "warmup_s": config.warmup_s,
            "think_scale": config.think_scale,
            "daily_amplitude": config.daily_amplitude,
            "cvr_daily_amplitude": config.cvr_daily_amplitude,
            "weekend_dip": config.weekend_dip,
            "peak_hour": config.daily_peak_hour,
            "channels": dict(config.channels),
            "devices": dict(config.devices),
            "countries": dict(config.countries),
            "cvr_factors": {k: dict(v) for k, v in config.cvr_factors.items()},
            "returning_share": config.returning_share,
            "users": config.users,
            "b2b_share": config.b2b_share,
            "accounts": config.accounts,
            "users_per_account": config.users_per_account,
            "repurchase_probability": config.repurchase_probability,
            "repurchase_interval_s": config.repurchase_interval_s,
            "login_at_cart_share": config.login_at_cart_share,
            "bounce_share": config.bounce_share,
            "removal_share": config.removal_share,
            "cart_return_share": config.cart_return_share,
            "cart_return_delay_s": config.cart_return_delay_s,
            "account_tiers": dict(config.account_tiers),
            "sales_reps": config.sales_reps,
            "slowing_share": config.slowing_share,
            "slowing_after_s": config.slowing_after_s,
        },
        "sink": sink,
        "start": format_ts(start_ms),
        "first_event_ts": None if truth.first_ts is None else format_ts(truth.first_ts),
        "last_event_ts": None if truth.last_ts is None else format_ts(truth.last_ts),
        "bucket_seconds": BUCKET_MS // 1_000,
        "stages": list(truth.stages),
        "scenarios": placed,
        "run": {k: v for k, v in report.items() if k != "totals"},
        "totals": truth.totals(),
        "minutes": truth.minutes(),
        "customers": {"totals": truth.customers.totals(), "days": truth.customers.days()},
        "accounts": _accounts(truth, accounts, directory, settings),
        "sessions": _sessions(truth),
    }


def _sessions(truth: GroundTruth) -> dict[str, Any]:
    minutes = truth.sessions.minutes(truth.customers.orders())
    return {
        "timeout_seconds": truth.sessions.timeout_ms // 1_000,
        "recovery_window_seconds": truth.sessions.recovery_ms // 1_000,
        "totals": truth.sessions.totals(minutes),
        "minutes": minutes,
    }


def _accounts(
    truth: GroundTruth, book: AccountBook | None, directory: str | None, settings: Settings
) -> dict[str, Any] | None:
    """The accounts of the run: its whole hours, the directory file, each account's figures
    over them (`storepulse accounts report --from FROM --to TO` must say the same)."""
    if book is None or truth.first_ts is None or truth.last_ts is None:
        return None
    first = truth.first_ts // _HOUR_MS * _HOUR_MS
    end = (truth.last_ts // _HOUR_MS + 1) * _HOUR_MS
    rows = truth.accounts.accounts(book, end, settings.at_risk_factor)
    return {
        "directory": directory,
        "from": format_ts(first),
        "to": format_ts(end),
        "at_risk_factor": str(settings.at_risk_factor),
        "totals": {
            "accounts": len(book.profiles),
            "in_directory": sum(p.in_directory for p in book.profiles),
            "active_accounts": len(rows),
            "ordering_accounts": sum(1 for r in rows if r["orders"]),
            "at_risk_accounts": sum(1 for r in rows if r["at_risk"]),
            "slowing_accounts": sum(p.slows_at_ms is not None for p in book.profiles),
        },
        "per_account": rows,
    }


def directory_path(manifest: str) -> str:
    """The account directory written beside a manifest: NAME.accounts.csv for NAME.json."""
    path = Path(manifest)
    return str(path.with_name(path.name.removesuffix(".json") + ".accounts.csv"))


def write_text(path: str, text: str) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    write_text(path, json.dumps(manifest, indent=1) + "\n")


def read_manifest(path: str) -> dict[str, Any]:
    with open(path) as fh:
        data: dict[str, Any] = json.load(fh)
    return data
