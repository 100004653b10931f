"""A private Prometheus over backfilled blocks: promtool's block import and the query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from storepulse.local.procs import ManagedProcess, ProcessSpec, ServiceError, free_port, http_ready
from storepulse.local.stack import find_binary

__all__ = ["MAX_POINTS", "Prometheus", "Series", "create_blocks", "fresh_dir"]

# query_range answers at most 11,000 points per series; chunks stay well below.
MAX_POINTS = 10_000
# (labels, [(epoch seconds, value as Prometheus wrote it)]) of one series in an answer.
Series = tuple[dict[str, str], list[tuple[float, str]]]


def _import(promtool: str, path: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ServiceError(
            f"promtool could not import {path}: {(done.stderr or done.stdout).strip()}"
        )
    path.unlink()


def create_blocks(files: Sequence[Path], data_dir: Path) -> None:
    """`promtool tsdb create-blocks-from openmetrics` of each file (one 2-hour block each)
    into data_dir, two at a time; the files are removed once imported."""
    promtool = find_binary("promtool")
    data_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(_import, promtool, path, data_dir) for path in files]:
            done.result()


class Prometheus:
    """`prometheus` on a free port over data_dir: no scrapes, no rules, only queries.

    The lookback is shorter than the evaluation step, so a recorded series that stops being
    recorded disappears at the next step, as the stale markers of a live rule evaluation make
    it do (backfilled blocks carry no stale markers).
    """

    def __init__(self, run_dir: Path, data_dir: Path, lookback_s: int) -> None:
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = run_dir / "prometheus.yml"
        run_dir.mkdir(parents=True, exist_ok=True)
        config.write_text('{"global": {"scrape_interval": "1h"}}\n')
        spec = ProcessSpec(
            name="backtest-prometheus",
            argv=[
                find_binary("prometheus"),
                f"--config.file={config.resolve()}",
                f"--storage.tsdb.path={data_dir.resolve()}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--query.lookback-delta={lookback_s}s",
                # Retention counts from the newest block, not the clock: keep every day.
                "--storage.tsdb.retention.time=3650d",
                "--query.timeout=10m",
                "--query.max-samples=200000000",
            ],
            ready=http_ready(f"{self.url}/-/ready"),
            address=self.url,
        )
        self.proc = ManagedProcess(spec, run_dir)

    def start(self) -> Prometheus:
        self.proc.start(timeout=120)
        return self

    def stop(self) -> None:
        self.proc.stop(timeout=30)

    def restart(self) -> None:
        """Stop and start again: the blocks added to the data dir meanwhile are loaded."""
        self.stop()
        self.start()

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=900) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise ServiceError(f"Prometheus refused {params.get('query', path)!r}: {body}") from exc
        except OSError as exc:
            raise ServiceError(f"Prometheus at {self.url} did not answer: {exc}") from exc
        if answer.get("status") != "success":
            raise ServiceError(f"Prometheus: {answer}")
        return answer["data"]

    def query_range(self, expr: str, start: int, end: int, step: int) -> Iterator[Series]:
        """Every series of expr at start, start + step, ... end, in chunks of MAX_POINTS."""
        chunk = MAX_POINTS * step
        merged: dict[str, Series] = {}
        for lo in range(start, end + 1, chunk):
            hi = min(end, lo + chunk - step)
            data = self._get("query_range", query=expr, start=str(lo), end=str(hi), step=f"{step}s")
            for item in data["result"]:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                key = json.dumps(labels, sort_keys=True)
                points = [(float(t), str(v)) for t, v in item["values"]]
                if key in merged:
                    merged[key][1].extend(points)
                else:
                    merged[key] = (labels, points)
        yield from merged.values()

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        data = self._get("query", query=expr, time=str(at))
        return [
            ({str(k): str(v) for k, v in r["metric"].items()}, float(r["value"][1]))
            for r in data["result"]
        ]


def fresh_dir(path: Path) -> Path:
    """path, emptied: a backtest's Prometheus data never mixes with an earlier run's."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
