"""The run manifest: seed, arguments, scenarios and the realized ground truth per minute."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from producers.config import TrafficConfig
from producers.scenarios import Scenario
from producers.truth import BUCKET_MS, GroundTruth
from streams.contract.times import format_ts
from streams.settings import Settings

__all__ = ["MANIFEST_VERSION", "build_manifest", "read_manifest", "write_manifest"]

MANIFEST_VERSION = 1


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
    }


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a manifest."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(path: str) -> dict[str, Any]:
    with open(path) as fh:
        data: dict[str, Any] = json.load(fh)
    return data
