#!/usr/bin/env bash
# The main job on the embedded default (in-process, local Ray, CPU): configs/quickstart.yaml, seed
# 000's chain on real MNI152 brain slices that ship with nilearn: ingest -> tiny DDPM -> sampling on
# Ray -> DINO on synthetic vs real vs none -> FID, segmentation and kNN/probe -> report.md.
#
#   bash scripts/quickstart.sh [KEY=VALUE overrides...]     (e.g. run.out_dir=/tmp/runs)
#
# Running it again skips the stages that are complete.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
"${SYNMED_VENV:-.venv}/bin/synmed" run configs/quickstart.yaml "$@"
