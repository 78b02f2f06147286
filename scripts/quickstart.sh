#!/usr/bin/env bash
# Quickstart: install into .venv, train a small ResNet on the built-in synthetic shapes
# data on CPU, then test it. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:--1}
exec .venv/bin/python tools/quickstart.py "$@"
