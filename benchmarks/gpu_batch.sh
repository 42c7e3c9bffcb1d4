#!/usr/bin/env bash
# The GPU session behind docs/benchmarks/busi_cv.rst and docs/benchmarks/throughput.rst, in one command:
#   1. benchmarks/gpu_check.py (CUDA paths of Trainer and Predictor, AMP, torchrun/NCCL);
#   2. benchmarks/busi_cv.py, one process per row and grouping, all at once on the one GPU;
#   3. benchmarks/external_eval.py: the BUSI-trained fold models of the grouped rows on BrEaST.
# Every busi_cv process is stopped after CV_DEADLINE seconds; its finished folds stay in
# RESULTS/cv/<row>-<groups>/fold-<k>/fold.json (rerun with the same command: --resume reuses them).
#
#   DATA=../shared/datasets/busi EXTERNAL=../shared/datasets/breast-lesions-usg bash benchmarks/gpu_batch.sh
#
# Knobs (environment): DATA, AUDIT (a `breastus audit --json` of the original images when DATA is a
# resized copy), EXTERNAL, RESULTS, JOBS, FOLDS, SIZE, EPOCHS (empty: each row's own), LIMIT,
# CV_DEADLINE, CHECK_DEADLINE, SKIP_CHECK=1.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/datasets/busi}
EXTERNAL=${EXTERNAL:-../shared/datasets/breast-lesions-usg}
RESULTS=${RESULTS:-runs/gpu}
JOBS=${JOBS:-"a:audit a:none b:audit b:none c:audit c:none b_robust:audit b_scanner:audit"}
FOLDS=${FOLDS:-5}
SIZE=${SIZE:-224}
CV_DEADLINE=${CV_DEADLINE:-300}
CHECK_DEADLINE=${CHECK_DEADLINE:-150}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg
mkdir -p "$RESULTS/cv"

if [ -z "${SKIP_CHECK:-}" ]; then
    echo "== gpu_check ($(date -u +%T))"
    timeout "$CHECK_DEADLINE" python benchmarks/gpu_check.py --data "$DATA" --json "$RESULTS/gpu_check.json" \
        >"$RESULTS/gpu_check.log" 2>&1
    echo "gpu_check exit $?"
    cat "$RESULTS/gpu_check.log"
fi

echo "== busi_cv, $FOLDS folds, $SIZE px, deadline $CV_DEADLINE s ($(date -u +%T))"
extra=()
[ -n "${AUDIT:-}" ] && extra+=(--audit-json "$AUDIT")
[ -n "${EPOCHS:-}" ] && extra+=(--epochs "$EPOCHS")
[ -n "${LIMIT:-}" ] && extra+=(--limit "$LIMIT")
for job in $JOBS; do
    row=${job%%:*}
    groups=${job##*:}
    workers=0
    case $row in *scanner* | c2) workers=3 ;; esac  # per-image CPU augmentation: no batch version
    timeout "$CV_DEADLINE" python benchmarks/busi_cv.py --data "$DATA" "${extra[@]}" --rows "$row" \
        --groups "$groups" --folds "$FOLDS" --image-size "$SIZE" --batch-augment --workers "$workers" --resume \
        --out "$RESULTS/cv" --json "$RESULTS/cv/$row-$groups.json" >"$RESULTS/cv/$row-$groups.log" 2>&1 &
done
wait
echo "busi_cv done ($(date -u +%T))"
tail -n 12 "$RESULTS"/cv/*.log

echo "== external evaluation on $EXTERNAL ($(date -u +%T))"
plain=()
for run in a-audit b-audit b_robust-audit b_scanner-audit b_scanner_only-audit b_letterbox-audit b_crop-audit; do
    ls "$RESULTS/cv/$run"/fold-*/best.pt >/dev/null 2>&1 && plain+=("$RESULTS/cv/$run")
done
[ ${#plain[@]} -gt 0 ] && timeout 120 python benchmarks/external_eval.py "${plain[@]}" "$EXTERNAL" \
    --json "$RESULTS/external.json" >"$RESULTS/external.log" 2>&1 &
for run in c-audit c2-audit; do  # rows evaluated with test-time augmentation
    if ls "$RESULTS/cv/$run"/fold-*/best.pt >/dev/null 2>&1; then
        timeout 120 python benchmarks/external_eval.py "$RESULTS/cv/$run" "$EXTERNAL" --tta \
            --json "$RESULTS/external_$run.json" >"$RESULTS/external_$run.log" 2>&1 &
    fi
done
wait
cat "$RESULTS"/external*.log 2>/dev/null | grep -v "^  fold-" || true
echo "== done ($(date -u +%T))"
