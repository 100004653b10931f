"""History into a Prometheus data dir: the exporter's series, then each level of recordings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from storepulse.backtest.openmetrics import BlockFiles, CounterEnds, exporter_families
from storepulse.backtest.prometheus import Prometheus, Series, create_blocks
from storepulse.backtest.rulefile import RecordRule, levels
from storepulse.backtest.simulate import Simulation

__all__ = ["backfill_exporter", "backfill_recordings"]

log = logging.getLogger("storepulse.backtest")


def backfill_exporter(
    sim: Simulation,
    data_dir: Path,
    work_dir: Path,
    target: Mapping[str, str],
    window_gauges: bool = False,
    min_sample: int = 20,
    ends: CounterEnds | None = None,
) -> int:
    """The series the exporter would have served at every step, as blocks in data_dir."""
    files = BlockFiles(work_dir / "exporter-om")
    samples = exporter_families(files, sim, target, window_gauges, min_sample, ends)
    create_blocks(files.close(), data_dir)
    return samples


def _family(
    prom: Prometheus, rules: Sequence[RecordRule], *, start: int, end: int, step: int
) -> list[Series]:
    """One recorded name: each of its rules evaluated by Prometheus at every step, with the
    rule's labels set and the record's name, as a rule group would write them."""
    merged: dict[tuple[tuple[str, str], ...], Series] = {}
    for rule in rules:
        for labels, points in prom.query_range(rule.expr, start, end, step):
            # The record's name replaces the expression's: series that differ only by the
            # name they had (`a or b` of two records) are one recorded series.
            labels.pop("__name__", None)
            full = {**labels, **rule.labels}
            key = tuple(sorted(full.items()))
            if key in merged:
                merged[key][1].extend(points)
            else:
                merged[key] = (full, list(points))
    for _, points in merged.values():
        points.sort()
    return list(merged.values())


def backfill_recordings(
    prom: Prometheus,
    records: Sequence[RecordRule],
    start: int,
    end: int,
    step: int,
    work_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Every recording rule evaluated over [start, end] every `step`, level by level.

    Prometheus evaluates each rule's expression through its query API (query_range, as
    `promtool tsdb create-blocks-from rules` does); the results of a level become blocks in
    its data dir and Prometheus restarts to load them, so the next level reads them. Unlike
    that command (one block per rule per 2 hours, rules unable to read each other's output),
    a level is one import. Returns the samples written.
    """
    written = 0
    for depth, level in enumerate(levels(records)):
        began = time.monotonic()
        files = BlockFiles(work_dir / f"recordings-{depth}-om")
        names = list(dict.fromkeys(r.record for r in level))
        by_name = [[r for r in level if r.record == name] for name in names]
        with ThreadPoolExecutor(2) as pool:
            # Two queries at a time: Prometheus evaluates each on one core.
            answers = pool.map(partial(_family, prom, start=start, end=end, step=step), by_name)
            for name, series in zip(names, answers, strict=True):
                written += files.family(name, "gauge", series)
        queried = time.monotonic()
        create_blocks(files.close(), prom.data_dir)
        imported = time.monotonic()
        prom.restart()
        if progress is not None:
            progress(
                f"recording level {depth}: {len(names)} names, queries "
                f"{queried - began:.1f}s, import {imported - queried:.1f}s, restart "
                f"{time.monotonic() - imported:.1f}s"
            )
    return written
