#!/usr/bin/env bash
# Installs what the app needs on a fresh machine and starts it at http://127.0.0.1:8501,
# with the built-in sample data ready on the Data page.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# A GPU that nvidia-smi lists: TensorFlow's CUDA libraries too, so that training uses it (without
# them TensorFlow silently trains on the CPU).
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "tensorflow[and-cuda]==2.21.0"
fi

export TF_CPP_MIN_LOG_LEVEL=2
export SPROUT_START_WITH_SAMPLE=1
exec .venv/bin/python -m streamlit run app.py "$@"
