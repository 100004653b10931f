"""The generate and replay subcommands: every option explained, arguments validated."""

from __future__ import annotations

import argparse

import pytest

from storepulse.cli import build_parser, generate, replay
from streams.settings import Settings


def _sub(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    generate.register(sub)
    replay.register(sub)
    found = sub.choices[name]
    assert isinstance(found, argparse.ArgumentParser)
    return found


@pytest.mark.parametrize("name", ["generate", "replay"])
def test_every_option_has_help(name: str) -> None:
    parser = _sub(name)
    for action in parser._actions:
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "--rate" in text
    assert parser.get_default("handler") is not None


def test_main_parser_has_both_commands() -> None:
    args = build_parser().parse_args(["replay", "a.jsonl", "--speed", "max", "--rate", "50"])
    assert (args.speed, args.rate, args.files) == (None, 50.0, ["a.jsonl"])
    args = build_parser().parse_args(["generate", "--scenario", "traffic-surge"])
    assert args.scenario == ["traffic-surge"]


def _options(*argv: str, settings: Settings | None = None) -> object:
    args = _sub("generate").parse_args(list(argv))
    return generate.generate_options(args, settings or Settings())


def test_generate_options_from_arguments() -> None:
    opts = _options(
        "--out",
        "x.jsonl",
        "--events",
        "1_000",
        "--cvr",
        "0.03",
        "--devices",
        "mobile=1,desktop=1,tablet=0",
        "--cvr-by",
        "device:mobile=0.5,country:de=2",
        "--scenario",
        "checkout-outage:start=1m,duration=2m,step=review",
        "--start",
        "2024-05-01T00:00:00Z",
        "--seed",
        "7",
        "--think-scale",
        "0.25",
    )
    assert opts.paced is False  # type: ignore[attr-defined]
    assert opts.events == 1_000  # type: ignore[attr-defined]
    assert opts.start_ms == 1_714_521_600_000  # type: ignore[attr-defined]
    config = opts.config  # type: ignore[attr-defined]
    assert config.cvr == 0.03
    assert config.think_scale == 0.25
    assert dict(config.devices) == {"desktop": 0.5, "mobile": 0.5, "tablet": 0.0}
    assert config.cvr_factors == {"device": {"mobile": 0.5}, "country": {"DE": 2.0}}
    assert opts.scenarios[0].step == "review"  # type: ignore[attr-defined]
    assert opts.arguments["seed"] == 7  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "x.jsonl"], "needs --events or --duration"),
        (["--no-pace"], "needs --events or --duration"),
        (["--channels", "tv=1"], "tv not in the settings' channels"),
        (["--scenario", "meteor"], "unknown scenario"),
        (["--cvr", "0.5"], "cart rate"),
        (["--currency", "EURO"], "ISO 4217"),
    ],
)
def test_generate_refuses_unusable_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _options(*argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--cvr", "1.5"],
        ["--late-share", "-0.1"],
        ["--events", "0"],
        ["--think-scale", "0"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _sub("generate").parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
