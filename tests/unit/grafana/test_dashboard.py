"""grafana/build.py: the committed dashboard is what the code builds, its queries parse, and it
agrees with the provisioning files, the recording rules and the exporter's metric names."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests import catalogue
from tests.harness import PROJECT_DIR as ROOT

BUILD = ROOT / "grafana" / "build.py"
COMMITTED = ROOT / "grafana" / "dashboards" / "storepulse.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
RULES = ROOT / "prometheus" / "rules" / "storepulse.yml"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("storepulse_grafana_build", BUILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return loaded


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_regenerated_json_equals_committed(tmp_path: Path) -> None:
    out = tmp_path / "storepulse.json"
    result = _script("--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == COMMITTED.read_bytes(), "run `make dashboards` and commit"
    assert out.read_text(encoding="utf-8").endswith("}\n")


def test_check_mode_detects_drift(tmp_path: Path) -> None:
    assert _script("--check").returncode == 0
    stale = tmp_path / "stale.json"
    stale.write_text(COMMITTED.read_text(encoding="utf-8").replace("live KPIs", "old KPIs"))
    result = _script("--check", "--out", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_render_is_deterministic(build: ModuleType) -> None:
    assert build.render() == build.render()
    assert build.render() == COMMITTED.read_text(encoding="utf-8")


def test_identity_and_datasource(board: dict[str, Any]) -> None:
    assert board["uid"] == "storepulse-kpis"
    assert board["title"] == "storepulse — live KPIs"
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert [d["uid"] for d in provisioned] == ["storepulse-prometheus"]
    assert provisioned[0]["type"] == "prometheus"
    refs = [p["datasource"] for p in board["panels"] if p["type"] != "row"]
    refs += [t["datasource"] for p in board["panels"] for t in p.get("targets", [])]
    refs += [v["datasource"] for v in board["templating"]["list"] if v["type"] == "query"]
    assert refs
    assert all(ref == {"type": "prometheus", "uid": "storepulse-prometheus"} for ref in refs)


def test_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("channel", "device"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["query"] == f"label_values(storepulse_funnel_sessions_total, {name})"
        assert variable["includeAll"] is True
        assert variable["allValue"] == "all"  # the exporter's "not broken down" value
    assert variables["window"]["query"] == "5m,15m,1h"


def test_panels_cover_the_board(board: dict[str, Any]) -> None:
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {
        "Conversion rate",
        "Cart abandonment",
        "Average order value",
        "Orders / min",
        "Revenue / min",
        "Funnel: sessions reaching each stage",
        "Drop-off per checkout step",
        "Cart abandonment vs its alert threshold",
        "Conversion by channel",
        "Conversion by device",
        "Cart abandonment by channel",
        "Cart abandonment by device",
        "Events consumed / s",
        "Consumer lag",
        "Dead-letter topic",
        "Batch apply latency",
        "Event-to-store latency",
        "New customers today",
        "Returning customers today",
        "Repeat customers today",
        "Retention vs the period before",
        "Orders by customer kind / min",
        "New customers by channel / h",
        "Customer stage",
    } <= titles
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    by_title = {p["title"]: p for p in panels}
    for title in ("Conversion rate", "Cart abandonment"):
        steps = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert len(steps) >= 3, title
    funnel = by_title["Funnel: sessions reaching each stage"]
    assert funnel["type"] == "bargauge"
    assert [t["legendFormat"] for t in funnel["targets"]] == [
        "visit",
        "cart",
        "shipping",
        "payment",
        "review",
        "purchase",
    ]
    threshold = by_title["Cart abandonment vs its alert threshold"]
    assert any("alert_threshold" in t["expr"] for t in threshold["targets"])
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_substitution(build: ModuleType) -> None:
    expr = 'rate(x{channel=~"$channel", device=~"${device}"}[$__rate_interval])'
    assert build.substitute_variables(expr, {"channel": ".*"}) == (
        'rate(x{channel=~".*", device=~"all"}[1m])'
    )
    with pytest.raises(KeyError):
        build.substitute_variables("x[$nope]")


@pytest.mark.parametrize(
    "values",
    [None, {"channel": ".*", "device": ".*", "__range": "5m"}],
    ids=["defaults", "regex"],
)
def test_every_expression_parses_with_promtool(
    build: ModuleType, tmp_path: Path, values: dict[str, str] | None
) -> None:
    expressions = build.panel_expressions(values=values)
    assert len(expressions) >= 30
    for where, expr in expressions:
        assert "$" not in expr, where
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{index}:check", "expr": expr}
                    for index, (_, expr) in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not on PATH (apt-get install prometheus)"
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_expressions_name_known_series(build: ModuleType, board: dict[str, Any]) -> None:
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    # What the exporter and the worker serve, from their own code (a real exporter serves the
    # same: tests/integration/streams/exporter/test_exporter.py).
    served = catalogue.exporter_families() | catalogue.worker_families()
    exprs = build.panel_expressions()
    used = catalogue.check_expressions(exprs, served, recorded)
    assert {"storepulse_conversion_ratio", "storepulse_batch_apply_seconds_bucket"} <= used
    assert used & recorded, "the board shows no recording rule"
    # The variables take their values from a served metric's label.
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(
                r"label_values\((\w+), (\w+)\)", variable["query"]
            ).groups()
            assert label in (served[metric].labels or ()), variable["query"]


def test_the_funnel_panel_follows_the_checkout_steps(build: ModuleType, tmp_path: Path) -> None:
    from streams.contract.events import DEFAULT_CHECKOUT_STEPS

    assert build.DEFAULT_STEPS == DEFAULT_CHECKOUT_STEPS  # the committed JSON's steps

    def funnel_stages(data: dict[str, Any]) -> list[str]:
        (panel,) = [p for p in data["panels"] if p["title"].startswith("Funnel:")]
        return [re.search(r'stage="(\w+)"', t["expr"]).group(1) for t in panel["targets"]]

    out = tmp_path / "custom.json"
    assert build.main(["--checkout-steps", "address,pay", "--out", str(out)]) == 0
    assert funnel_stages(json.loads(out.read_text())) == [
        "visit",
        "cart",
        "address",
        "pay",
        "purchase",
    ]
    assert funnel_stages(json.loads(COMMITTED.read_text())) == [
        "visit",
        "cart",
        *DEFAULT_CHECKOUT_STEPS,
        "purchase",
    ]
