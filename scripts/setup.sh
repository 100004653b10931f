#!/usr/bin/env bash
# Idempotent machine setup for storepulse on Debian: system services (apt) and the project venv.
# Usage: scripts/setup.sh            (everything)
#        SKIP_APT=1 scripts/setup.sh (venv only)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v chromium >/dev/null || need_apt+=(chromium)

if [ "${SKIP_APT:-0}" != "1" ] && [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  # --no-install-recommends keeps the footprint small; the packages start no service
  # without an init system, and the stack runs them as plain processes anyway.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's packages may start system services on hosts with systemd; storepulse never uses
# them (its own ports are distinct), so they are left alone.

# The exact versions of requirements.lock (hash-checked; `make lock` refreshes it), then the
# project itself without resolving anything again. Re-run when the lock or pyproject.toml is
# newer than the stamp.
stamp="$VENV/.storepulse-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  echo "setup: pip install -r requirements.lock, then -e . --no-deps"
  "$VENV/bin/python" -m pip install -q --require-hashes -r requirements.lock
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  touch "$stamp"
fi
echo "setup: ok ($("$VENV/bin/python" --version), $(redis-server --version | cut -d' ' -f3), $(prometheus --version 2>&1 | head -1 | cut -d' ' -f3))"
