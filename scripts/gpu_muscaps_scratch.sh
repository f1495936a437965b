#!/usr/bin/env bash
# MusCaps' scratch-CNN row and its matched control, trained at once on one lent GPU (train/muscaps_scratch.py).
# Run in the repository root of the GPU machine, with the pack (.gpu_row/pack.npz) and the wheels its Python
# lacks (.whl/: soundfile, cffi, pycparser, soxr) beside the code (PACK and WHEELS name others). The two
# checkpoint folders come back as $OUT/<row>.tar.gz and are evaluated on the CPU machine with train.evaluate
# (docstring of train/muscaps_scratch.py). MINUTES caps each row's training (the lease is 15 minutes, start included);
# COMMIT names the code's commit (the copy there has no git history); ROWS the rows to train (default both).
set -euo pipefail
MINUTES=${MINUTES:-5.5}
PACK=${PACK:-.gpu_row/pack.npz}
WHEELS=${WHEELS:-.whl}
ROWS=${ROWS:-scratch pretrained}
OUT=${OUT:?the folder whose files come back}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
rows=/tmp/rows
mkdir -p "$rows"
declare -A folder=([scratch]=muscaps_scratch [pretrained]=muscaps_early_subset)
for row in $ROWS; do
  python3 -m train.muscaps_scratch train --pack "$PACK" --row "$row" --out "$rows/${folder[$row]}" \
    --minutes "$MINUTES" --threads 4 ${COMMIT:+--commit "$COMMIT"} > "$OUT/$row.log" 2>&1 &
done
status=0
for _ in $ROWS; do wait -n || status=$?; done
for row in $ROWS; do
  tail -c 1500 "$OUT/$row.log" | tr '\r' '\n' | tail -4
  [ -f "$rows/${folder[$row]}/training.json" ] && tar czf "$OUT/${folder[$row]}.tar.gz" -C "$rows" "${folder[$row]}"
done
exit "$status"
