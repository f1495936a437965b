#!/usr/bin/env bash
# Installs the test dependencies (Debian packages and Python packages) and runs lint + the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tiny corpus renders with four soundfonts (~149 MB of packages: opl3-soundfont 100 MB, avldrums 25 MB,
# fluidr3mono 19 MB, timgm6mb 5 MB); fluid-soundfont-gm (120 MB) is only needed for small and full builds.
APT_PACKAGES=(fluidsynth timgm6mb-soundfont fluidr3mono-gm-soundfont opl3-soundfont avldrums.lv2-soundfont chromium wordnet-base wordnet-sense-index ffmpeg libsndfile1)
missing=()
command -v java > /dev/null || missing+=(default-jre-headless)  # METEOR and the PTB tokenizer are jars
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
bash scripts/install.sh
python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
python -m ruff check .
python -m ruff format --check .
python -m pytest -q -p no:cacheprovider "$@"
