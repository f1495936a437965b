#!/usr/bin/env bash
# Installs what the app, the CLI and train/ need (Python packages only). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --disable-pip-version-check -q -r requirements.txt
# musicnn 0.1.0 carries the pretrained MTT/MSD weights we port; its own pins (numpy<1.17,
# tensorflow) cannot install on Python 3.11 and are not needed: we only read its checkpoint files.
python -m pip install --disable-pip-version-check -q --no-deps musicnn==0.1.0
# The GPT-2 byte-level BPE ranks ship inside openai-whisper (its sdist): only that asset is read.
python -m pip install --disable-pip-version-check -q --no-deps openai-whisper==20250625
python -m pip install --disable-pip-version-check -q --no-deps -e .
