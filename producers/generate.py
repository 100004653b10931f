"""`storepulse generate`: the traffic model into a sink, paced or not, plus the manifest."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from producers.config import TrafficConfig
from producers.entries import LOST, Entry
from producers.manifest import build_manifest, directory_path, write_manifest, write_text
from producers.model import TrafficModel
from producers.rate import Pacer, Progress
from producers.scenarios import Scenario, Timeline
from producers.sinks import FileSink, KafkaSink, Sink, create_topics, start_sink
from producers.truth import GroundTruth
from streams.settings import Settings

__all__ = ["GenerateOptions", "GenerateReport", "generate", "warmup_for"]

# Paced runs start "mid-day": sessions that began before the start are simulated so the rate is
# steady from the first second. 300 s of arrivals covers ~96% of the steady event rate; the
# work is capped at 100,000 warm-up sessions (~2 s) so high rates still start promptly.
_WARMUP_SECONDS = 300.0
_WARMUP_MAX_SESSIONS = 100_000
# Paced runs keep event time close to the wall clock by nudging the rate by at most 2%, once
# event time is more than 5 s off (so short runs are exact), closing the excess at 1/10 per s.
_MAX_CORRECTION = 0.02
_CORRECTION_SECONDS = 10.0
_DEAD_BAND_SECONDS = 5.0
_UNPACED_CHUNK = 2_000  # lines per sink call when not pacing
_PACED_CHUNK = 1_000  # at most 1,000 lines per burst: ~50 ms of work, the loop stays responsive


@dataclass
class GenerateOptions:
    """A generate run; `out` None means the Kafka topic of the settings."""

    config: TrafficConfig
    scenarios: list[Scenario] = field(default_factory=list)
    out: str | None = None
    pace: bool = True
    duration_s: float | None = None
    events: int | None = None
    start_ms: int | None = None
    seed: int | None = None
    manifest: str | None = None
    warmup_s: float | None = None  # None: automatic (warmup_for) when paced, else 0
    create_topics: bool = True
    compression: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def paced(self) -> bool:
        return self.out is None and self.pace


@dataclass
class GenerateReport:
    """What a run did; `summary()` is the one-line text form."""

    sink: str
    seed: int
    lines: int
    acked: int
    errors: int
    duration_s: float  # the whole run, final flush included
    send_s: float  # the sending window: the rate is measured over it
    asked_rate: float | None
    behind_s: float
    interrupted: bool
    last_error: str | None
    manifest: str | None
    truth: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.lines / self.send_s if self.send_s > 0 else 0.0

    @property
    def kept_up(self) -> bool:
        """False when a paced run fell short of the asked rate by more than 5%."""
        if self.asked_rate is None:
            return True
        return self.behind_s <= 0.05 * self.send_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "seed": self.seed,
            "lines": self.lines,
            "acked": self.acked,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "send_s": round(self.send_s, 3),
            "rate": round(self.rate, 1),
            "asked_rate": self.asked_rate,
            "kept_up": self.kept_up,
            "interrupted": self.interrupted,
            "last_error": self.last_error,
            "manifest": self.manifest,
            "totals": self.truth,
        }

    def summary(self) -> str:
        asked = f" (asked {self.asked_rate:,.0f}/s)" if self.asked_rate is not None else ""
        text = (
            f"generate: {self.lines:,} lines to {self.sink}, {self.acked:,} acknowledged, "
            f"{self.errors:,} errors in {self.duration_s:.2f}s; {self.rate:,.0f} lines/s{asked}"
            f", seed {self.seed}"
        )
        if not self.kept_up:
            text += (
                f"; the sink could not keep up: {self.behind_s:.1f}s of the schedule were "
                "skipped, the asked rate was not reached"
            )
        if self.interrupted:
            text += "; interrupted"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        return text


def warmup_for(model_session_rate: float, think_scale: float = 1.0) -> float:
    """Default warm-up of a paced run: 300 s (scaled like the think times, which set how long
    a session lasts), or less so that at most 100,000 sessions are made."""
    return min(_WARMUP_SECONDS * think_scale, _WARMUP_MAX_SESSIONS / model_session_rate)


def _take(it: Iterator[Entry], truth: GroundTruth, n: int, end_ms: float) -> list[Entry] | None:
    """Up to n line entries (LOST ones are recorded on the way); None once end_ms is reached."""
    out: list[Entry] = []
    record = truth.record
    while len(out) < n:
        entry = next(it)
        if entry[0] >= end_ms:
            return out or None
        if entry[2] == LOST:
            record(entry)
            continue
        out.append(entry)
    return out


async def generate(
    settings: Settings,
    opts: GenerateOptions,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> GenerateReport:
    """Run until the duration, the event count or `stop`; always flushes and stops the sink."""
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**32)
    stop = stop or asyncio.Event()
    timeline = Timeline(opts.scenarios)
    start_ms = opts.start_ms if opts.start_ms is not None else time.time_ns() // 1_000_000
    config = opts.config
    if opts.warmup_s is not None:
        config = replace(config, warmup_s=opts.warmup_s)
    elif opts.paced:
        probe = TrafficModel(config, timeline, seed, start_ms)
        config = replace(config, warmup_s=warmup_for(probe.session_rate, config.think_scale))
    model = TrafficModel(config, timeline, seed, start_ms)
    truth = GroundTruth(
        model.stages,
        settings.session_timeout_seconds * 1_000,
        settings.recovery_window_seconds * 1_000,
    )
    sink: Sink
    if opts.out is not None:
        sink = FileSink(opts.out)
    else:
        if opts.create_topics:
            await create_topics(settings)
        sink = KafkaSink(settings, compression=opts.compression)
    await start_sink(sink)
    pacer = Pacer()
    started = time.monotonic()
    interrupted = False
    try:
        # The first entry costs the whole warm-up; take it before the clock starts.
        it = iter(model)
        it = itertools.chain([next(it)], it)
        end_ms = float("inf")
        if opts.duration_s is not None and not opts.paced:
            end_ms = start_ms + opts.duration_s * 1_000
        limit = opts.events if opts.events is not None else -1
        started = pacer.start() if opts.paced else time.monotonic()
        last_emit = start_ms
        while not stop.is_set() and limit != 0:
            if opts.paced:
                if opts.duration_s is not None and time.monotonic() - started >= opts.duration_s:
                    break
                # Follow the model's expected rate, nudged so event time tracks the wall clock.
                ahead = (last_emit - start_ms) / 1_000 - (time.monotonic() - started)
                excess = max(0.0, abs(ahead) - _DEAD_BAND_SECONDS)
                nudge = min(_MAX_CORRECTION, excess / _CORRECTION_SECONDS)
                nudge = nudge if ahead > 0 else -nudge
                rate = model.expected_rate(last_emit) * (1.0 - nudge)
                n = await pacer.acquire(rate, limit=_PACED_CHUNK)
            else:
                n = _UNPACED_CHUNK
                await asyncio.sleep(0)  # lets signal handlers run
            if limit > 0:
                n = min(n, limit)
            entries = _take(it, truth, n, end_ms)
            if entries is None:
                break
            for entry in entries:
                truth.record(entry)
            await sink.send_batch(
                [(None if e[4] is None else e[4].encode(), (e[3] or "").encode()) for e in entries]
            )
            if entries:
                last_emit = entries[-1][0]
            if limit > 0:
                limit -= len(entries)
            if progress is not None:
                progress.update(sink.sent, sink.errors)
        interrupted = stop.is_set()
        if opts.paced:
            pacer.finish()
        send_s = time.monotonic() - started
        await sink.flush()
    finally:
        await sink.stop()
        if progress is not None:
            progress.close()
    duration = time.monotonic() - started
    truth.finish()
    report = GenerateReport(
        sink=sink.description,
        seed=seed,
        lines=sink.sent,
        acked=sink.acked,
        errors=sink.errors,
        duration_s=duration,
        send_s=send_s,
        asked_rate=config.rate if opts.paced else None,
        behind_s=pacer.behind_seconds,
        interrupted=interrupted,
        last_error=sink.last_error,
        manifest=opts.manifest,
        truth=truth.totals(),
    )
    if opts.manifest:
        # The account directory beside the manifest (`storepulse accounts load` reads it).
        directory = directory_path(opts.manifest)
        write_text(directory, model.accounts.directory_csv())
        manifest = build_manifest(
            seed=seed,
            arguments=opts.arguments,
            settings=settings,
            sink=sink.description,
            start_ms=start_ms,
            config=config,
            scenarios=opts.scenarios,
            truth=truth,
            report=report.as_dict(),
            accounts=model.accounts,
            directory=directory,
        )
        write_manifest(opts.manifest, manifest)
    return report
