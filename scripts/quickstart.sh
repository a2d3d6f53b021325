#!/usr/bin/env bash
# The main job on the embedded default (in-process, CPU): real demo data -> verified shard sets.
#
#   bash scripts/quickstart.sh [OUT]      (default OUT: runs/quickstart)
#
# Until the pipeline stages land this ingests the two demo sources shipped in installed packages
# (MNI152 brain slices with grey/white-matter masks; a real chest X-ray DICOM), verifies the shard
# sets and prints what they hold.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quickstart}

bash scripts/setup.sh
synmed="${SYNMED_VENV:-.venv}/bin/synmed"

"$synmed" data ingest --config configs/data/mni152.yaml --out "$OUT/mni152" --overwrite --quiet
"$synmed" data ingest --config configs/data/chest_dicom.yaml --out "$OUT/chest-dicom" --overwrite --quiet
"$synmed" data verify "$OUT/mni152" "$OUT/chest-dicom"
"$synmed" data export "$OUT/mni152" --to "$OUT/mni152-png" --split test --limit 16 --overwrite
echo "quickstart: shard sets in $OUT/ (inspect with: $synmed data info $OUT/mni152)"
