#!/usr/bin/env bash
# The paper preset (train.json alone: 768-px phantoms, ResNet-50, 224/96-px views, SimCLR with the paper's
# augmentation) on a lent GPU, time-boxed: segmentation and SSL epochs cut to what one 10-minute device call allows.
#
#   bash bundles/hand_osteo/scripts/paper_preset_check.sh OUT [SSL_EPOCHS] [SEG_EPOCHS] [LIMIT_S]
#
# Writes OUT/log.txt (the full log), OUT/monitor.txt (the SSL monitor's kNN / linear-probe AUC per epoch) and the
# evaluation's metrics.md / metrics.json / roc.png. 400 labelled subjects split 70/15/15 (60 test subjects).
set -uo pipefail
OUT=${1:?usage: paper_preset_check.sh OUT [SSL_EPOCHS] [SEG_EPOCHS] [LIMIT_S]}
SSL_EPOCHS=${2:-10}
SEG_EPOCHS=${3:-10}
LIMIT_S=${4:-500}
B=bundles/hand_osteo/configs
RUN=${PAPER_RUN_DIR:-/tmp/hand_osteo_paper}
mkdir -p "$OUT"
python3 - <<'PY' || exit 3
import torch, monai, lightly, monai_osteo.bundle.hand_osteo, monai_osteo.handlers, monai_osteo.engines  # noqa: F401
from monai_osteo.bundle import versions
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", versions(), flush=True)
PY
start=$(date +%s)
timeout "$LIMIT_S" python3 -m monai.bundle run --config_file "['$B/train.json']" --output_dir "$RUN" \
  --phantom_dir "$RUN/phantom" --phantom_overrides "{'subjects': 400, 'split_fractions': [0.7, 0.15, 0.15]}" \
  --num_workers "${NUM_WORKERS:-12}" --seg_epochs "$SEG_EPOCHS" --seg_anneal_epochs "$SEG_EPOCHS" \
  --ssl_epochs "$SSL_EPOCHS" --ssl_warmup_epochs 2 --ssl_monitor_interval 1 > "$OUT/log.txt" 2>&1
rc=$?
echo "exit $rc after $(( $(date +%s) - start )) s" | tee -a "$OUT/log.txt"
grep -a "monai_osteo.handlers - INFO - epoch\|Dice\|AUC\|stage " "$OUT/log.txt" | tr '\r' '\n' | grep -v "ssl\[" > "$OUT/monitor.txt"
for f in metrics.md metrics.json roc.png; do cp "$RUN/eval/$f" "$OUT/" 2>/dev/null; done
cat "$OUT/monitor.txt"; cat "$OUT/metrics.md" 2>/dev/null
exit $rc
