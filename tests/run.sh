#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them all:
# lint, types, and the whole pytest suite (unit, integration, browser).
# Usage: bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# deploy/systemd/hearth.service is checked with systemd-analyze (no systemd needs to run).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

# promtool checks and tests deploy/prometheus/: Debian's prometheus package, unpacked into
# build/promtool only (installing it would start a Prometheus server).
if [ ! -x build/promtool/usr/bin/promtool ]; then
  echo "== promtool (Debian's prometheus package, unpacked into build/promtool)"
  rm -rf build/promtool && mkdir -p build/promtool
  ( cd build/promtool \
    && { apt-get download -q prometheus 2>/dev/null \
         || { $SUDO apt-get update -q && apt-get download -q prometheus; }; } \
    && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb ) \
    || echo "WARNING: promtool could not be unpacked; the promtool test fails in CI"
fi

echo "== python environment (versions pinned by constraints.txt)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'

echo "== axe-core for the accessibility tests (npm; never committed)"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix tests/browser axe-core@4

echo "== ruff"
.venv/bin/ruff check spaces moderation web tests bench
echo "== mypy --strict (hearth.spaces, hearth.moderation)"
bash tests/typecheck.sh

echo "== pip-audit: known vulnerabilities in the pinned dependencies"
# Fails on a known vulnerability; only warns (loudly) when the advisory service
# cannot be reached or does not know the pinned versions (tests/support/supply_chain.py).
.venv/bin/python tests/support/supply_chain.py constraints.txt

echo "== pytest (one worker per core, each test file whole on one worker)"
# Most of a live or browser test waits on a real server, page or redis-server, so the files run
# side by side (pytest-xdist). HEARTH_TEST_WORKERS=0 runs them one after another, in one process.
.venv/bin/python -m pytest -q -n "${HEARTH_TEST_WORKERS:-auto}" --maxprocesses=4 --dist loadfile "$@"
