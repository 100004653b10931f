"""`storepulse exporter`: its help names every route, its arguments are checked."""

from __future__ import annotations

import pytest

from storepulse.cli import build_parser


def test_exporter_subcommand_help_names_every_route(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["exporter", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for route in ("/metrics", "/api/kpis", "/api/alerts", "/healthz", "--alertmanager-url"):
        assert route in out


def test_exporter_arguments() -> None:
    args = build_parser().parse_args(
        ["exporter", "--port", "0", "--alertmanager-url", "http://am:9093", "--cache-seconds", ".5"]
    )
    assert (args.port, args.alertmanager_url, args.cache_seconds) == (0, "http://am:9093", 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["exporter", "--cache-seconds", "2"])
