"""argparse number types: accepted forms and the messages of refused ones."""

from __future__ import annotations

import argparse

import pytest

from storepulse.cli.argtypes import count, positive, share


def test_accepted_forms() -> None:
    assert count("150_000") == 150_000
    assert count("150,000") == 150_000
    assert positive("0.5") == 0.5
    assert share()("1") == 1.0
    assert share(0.5)("0") == 0.0


@pytest.mark.parametrize(
    ("parse", "text", "needle"),
    [
        (count, "0", "of at least 1"),
        (count, "1.5", "expected a whole number"),
        (positive, "0", "above 0"),
        (positive, "x", "expected a number"),
        (share(), "1.01", "between 0 and 1"),
        (share(0.5), "0.6", "between 0 and 0.5"),
        (share(), "-0.1", "between 0 and 1"),
    ],
)
def test_refused_with_a_reason(parse, text: str, needle: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=needle):
        parse(text)
