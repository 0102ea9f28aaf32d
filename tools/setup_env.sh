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
# WordNet 3.0 + the lemmatiser's tagger for the NExT-QA open-ended scorer, into .nltk_data (offline-safe;
# installs Debian's wordnet packages with apt-get when missing and running as root).
.venv/bin/python -m llava_video.evaluation.wordnet_setup
echo "llava-video: environment ready in .venv"
