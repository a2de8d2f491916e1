#!/usr/bin/env bash
# The GPU check (issue 17): on a machine where nvidia-smi lists GPUs, a 5-minute search with one
# worker per GPU under KERAS_BACKEND=jax, on a generated image set; writes trials per minute and
# accuracy to bench/results/gpu-check.md. Usage: bash scripts/gpu-check.sh [--budget SECONDS]
# Needs TensorFlow's CUDA extra (scripts/app.sh installs it where nvidia-smi lists a GPU) and, for
# the JAX backend, JAX with CUDA (pip install 'jax[cuda12]'); KERAS_BACKEND=tensorflow runs it without.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
nvidia-smi -L
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
export TF_CPP_MIN_LOG_LEVEL=2
exec "$PY" -m bench.gpu_check "$@"
