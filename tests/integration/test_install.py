"""The wheel works installed the Dockerfile's way, in a fresh venv away from the checkout.

The wheel is built from a copy of exactly what the Dockerfile copies (a stale build/ of the
checkout cannot leak in), installed over requirements-runtime.lock into a new venv, and run from
a directory outside the repository: `storepulse --help`, `storepulse rules` and `storepulse
exporter` serving /, /api/kpis and /metrics against the test redis-server.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from storepulse.local.procs import free_port
from streams.settings import Settings, child_environment
from tests.harness import PROJECT_DIR

# Minutes long: started first, so that the run does not end waiting for it (tests/conftest.py).
pytestmark = pytest.mark.slow

# The Dockerfile's COPY sources: all that the wheel is built from.
SOURCES = ("pyproject.toml", "README.md", "streams", "producers", "storepulse")
RUNTIME_LOCK = PROJECT_DIR / "requirements-runtime.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)


def _name(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


@dataclass(frozen=True)
class Installed:
    venv: Path
    elsewhere: Path  # an empty working directory outside the repository

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _env(settings: Settings) -> dict[str, str]:
    # Nothing may point the new venv's Python back at the checkout.
    env = child_environment(settings)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH"):
        env.pop(name, None)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    env = _env(Settings())
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = PROJECT_DIR / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "-q", "--wheel-dir", str(dist), str(source)], root, env)
    (wheel,) = dist.glob("storepulse-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root, env)
    new_pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # The Dockerfile's two steps; --no-compile: bytecode is written on first import anyway,
    # and compiling ~40 packages up front costs half of this install's time.
    install = [*new_pip, "install", "-q", "--no-compile"]
    _run([*install, "--require-hashes", "-r", str(RUNTIME_LOCK)], root, env, timeout=240)
    _run([*install, "--no-deps", str(wheel)], root, env)
    # The wheel's own requirements are met by the lock, and nothing else is installed.
    _run([*new_pip, "check"], root, env)
    listed = json.loads(_run([*new_pip, "list", "--exclude-editable", "--format=json"], root, env))
    # pip and setuptools come with every venv; the lock pins neither (no runtime need).
    installed = {
        _name(p["name"]): p["version"] for p in listed if p["name"] not in {"pip", "setuptools"}
    }
    locked = {_name(n): v for n, v in PIN.findall(RUNTIME_LOCK.read_text())}
    assert installed == locked | {"storepulse": "0.1.0"}

    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(venv, elsewhere)


def test_the_installed_packages_come_from_the_venv(installed: Installed) -> None:
    code = (
        "import json, producers, storepulse, streams\n"
        "print(json.dumps([m.__file__ for m in (producers, storepulse, streams)]))"
    )
    out = _run([installed.bin("python"), "-c", code], installed.elsewhere, _env(Settings()))
    for path in json.loads(out):
        assert Path(path).is_relative_to(installed.venv), path


def test_help_and_rules_work_installed(installed: Installed) -> None:
    env = _env(Settings())
    helped = _run([installed.bin("storepulse"), "--help"], installed.elsewhere, env)
    assert {"stack", "exporter", "rules"} <= set(re.findall(r"^    (\w+)", helped, re.MULTILINE))
    # The rules come from the package data: for the defaults, exactly the committed file.
    rules = _run([installed.bin("storepulse"), "rules"], installed.elsewhere, env)
    assert rules == (PROJECT_DIR / "prometheus" / "rules" / "storepulse.yml").read_text()
    fifty = _run(
        [installed.bin("storepulse"), "rules"], installed.elsewhere, _env(Settings(min_sample=50))
    )
    assert ">= 50)" in fifty
    assert ">= 20)" not in fifty


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def test_the_installed_exporter_serves_the_board_kpis_and_metrics(
    installed: Installed, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, exporter_port=free_port(), state_dir=tmp_path)
    url = settings.exporter_url
    log = (tmp_path / "exporter.log").open("w+")
    proc = subprocess.Popen(
        [installed.bin("storepulse"), "exporter"],
        cwd=installed.elsewhere,
        env=_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"exporter exited {proc.returncode}"
            try:
                if _get(f"{url}/healthz")[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "exporter not ready within 30 s"
            time.sleep(0.2)

        status, content_type, body = _get(f"{url}/")
        assert status == 200
        assert content_type.startswith("text/html")
        assert "<title>" in body and "storepulse" in body.lower()

        status, content_type, body = _get(f"{url}/api/kpis?window=15m")
        assert status == 200
        assert content_type.startswith("application/json")
        kpis = json.loads(body)
        assert kpis["sessions"]["visit"] == 0
        assert kpis["conversion_rate"] is None  # nothing counted: no ratio

        status, content_type, body = _get(f"{url}/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert "# TYPE storepulse_funnel_sessions_total counter" in body
        assert re.search(r"^process_cpu_seconds_total \d", body, re.MULTILINE)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.seek(0)
            output = log.read()
            log.close()
    assert proc.returncode == 0, output
    assert "storepulse exporter: stopped" in output
