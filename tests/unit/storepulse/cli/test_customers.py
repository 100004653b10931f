"""`storepulse customers report|cohorts|import` and `customers-worker`: --help and bad arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from storepulse.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["customers", "--help"], "report"),
        (["customers", "report", "--help"], "--period"),
        (["customers", "cohorts", "--help"], "retention"),
        (["customers", "import", "--help"], "customer_id,first_order_at,orders,last_order_at"),
        (["customers-worker", "--help"], "STOREPULSE_CUSTOMER_TOPIC"),
    ],
)
def test_each_command_explains_itself(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the text
    assert says in out
    assert len(out) > 200


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["customers", "report", "--period", "year", "--from", "0", "--to", "1"], "--period"),
        (["customers", "cohorts", "--period", "hour", "--from", "0", "--to", "1"], "--period"),
        (["customers", "report", "--period", "day", "--from", "monday", "--to", "1"], "--from"),
        (["customers", "report", "--period", "day", "--to", "1"], "--from"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_bad_history_row_exits_2_with_its_line_and_imports_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        "customer_id,first_order_at,orders,last_order_at\n"
        "u-1,2024-01-01T00:00:00Z,2,2024-03-01T00:00:00Z\n"
        "u-2,2024-05-01T00:00:00Z,1,2024-04-01T00:00:00Z\n"
    )
    # The whole file is checked before Kafka is touched (none is reachable here).
    assert main(["customers", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 3: first_order_at is after last_order_at" in err
    assert "nothing was imported" in err
