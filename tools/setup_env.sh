#!/usr/bin/env bash
# Create .venv with the pinned CPU stack and install llava-video (editable) with its test extra.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The constraints file pins torch to the CPU build's version, so no extra pulls a CUDA build.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'
echo "llava-video: environment ready in .venv"
