"""`storepulse carts --abandoned`: --help, bad arguments, the cursor, the table."""

from __future__ import annotations

import pytest

from storepulse.cli import build_parser, main
from storepulse.cli.carts import render
from streams.query.carts import decode_cursor, encode_cursor

SPAN = ["--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z"]


def test_the_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["carts", "--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for says in ("--min-value", "--customer-only", "--cursor", "STOREPULSE_RECOVERY_WINDOW"):
        assert says in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["carts", *SPAN], "--abandoned"),
        (["carts", "--abandoned", "--to", "2026-11-02T00:00:00Z"], "--from"),
        (["carts", "--abandoned", *SPAN, "--min-value", "lots"], "--min-value"),
        (["carts", "--abandoned", *SPAN, "--min-value", "-5"], "--min-value"),
        (["carts", "--abandoned", *SPAN, "--min-value", "NaN"], "--min-value"),
        (["carts", "--abandoned", *SPAN, "--limit", "0"], "--limit"),
        (["carts", "--abandoned", *SPAN, "--limit", "1001"], "--limit"),
        (["carts", "--abandoned", *SPAN, "--cursor", "not-a-cursor!"], "--cursor"),
        (["carts", "--abandoned", "--from", "yesterday", "--to", "2026-11-02T00:00:00Z"], "--from"),
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


@pytest.mark.parametrize("sid", ["s-1", "a:b:c", "ünïcode sessión", "x" * 128])
def test_a_cursor_is_the_cart_it_goes_on_after(sid: str) -> None:
    assert decode_cursor(encode_cursor(1_795_000_000_123, sid)) == (1_795_000_000_123, sid)


@pytest.mark.parametrize("text", ["", "MTIz", "OmFiYw", "YWJjOmRlZg", "%%%"])
def test_what_is_not_a_cursor_says_so(text: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(text)


def test_the_table_shows_each_cart_and_the_next_page() -> None:
    cart = {
        "session_id": "s-1",
        "customer": None,
        "abandoned_at": "2026-11-01T10:00:00.000Z",
        "value": None,
        "currency": None,
        "recovered_at": None,
    }
    known = cart | {"session_id": "s-2", "customer": "u-1", "value": "12.50", "currency": "EUR"}
    text = render({"carts": [known, cart], "next": "abc"})
    lines = text.splitlines()
    assert "12.50 EUR" in lines[1] and "u-1" in lines[1]
    assert "mixed" in lines[2]
    assert lines[-1] == "more: --cursor abc"
