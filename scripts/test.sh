#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, checks the code with ruff, then runs
# the whole test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || echo "warning: could not install chromium; browser tests will be skipped" >&2
    else
        echo "warning: no apt-get; install Chromium at /usr/bin/chromium to run the browser tests" >&2
    fi
fi

# Lint first: it takes a second, and a failure stops the script (configured in pyproject.toml).
.venv/bin/python -m ruff check .

export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest "$@"
