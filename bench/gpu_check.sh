#!/usr/bin/env bash
# One command for a lent GPU machine, in at most 8 minutes: the CUDA-marked tests, inference and training timings
# on CUDA against MONAI, a torchrun DDP run over NCCL with its resume; every figure goes into one file.
#
#   bench/gpu_check.sh [--dry-run] [--out FILE] [--wheels DIR]
#
#   --wheels DIR  wheels to install first into a private folder, without network (default: .whl, when it exists):
#                 SimpleITK, nibabel and MONAI, which the GPU machine lacks; see bench/README.md
#   --out FILE    where the figures go (default: $OUT/gpu_check.txt, else ./gpu_check.txt); the whole output goes
#                 beside it, with .log instead of .txt
#   --dry-run     on any machine, GPU or not: check that every step's script exists and that its arguments parse
#                 (pytest collects the tests, each benchmark parses its arguments with --dry-run), run nothing
#
# PYTHON overrides the interpreter (default python3). Each step has its own time limit, cut to what is left of
# the 8 minutes; a failed or timed-out step is recorded and the next one still runs. The exit status is 0 only when
# every step succeeded.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
RESULTS="${OUT:-.}/gpu_check.txt"
WHEELS=.whl
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) RESULTS="$2"; shift ;;
        --wheels) WHEELS="$2"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-python3}"
LOG="${RESULTS%.txt}.log"
BUDGET_S=480
BUNDLED_MODEL=StrokeSeg/StrokeSegLib/models/strokeseg-starter.safetensors
export PYTHONPATH="StrokeSeg:StrokeSegTrain${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
: > "$LOG"
FAILED=0

note() { echo "$*" | tee -a "$RESULTS"; }

# step NAME LIMIT_S CHECK_FLAG COMMAND...: run COMMAND under a time limit (or, with --dry-run, COMMAND CHECK_FLAG);
# the whole output goes to the log, its figure lines (those with '=' or a pytest summary) to the results.
step() {
    local name="$1" limit="$2" check="$3"
    shift 3
    local left=$((BUDGET_S - SECONDS))
    if [ "$DRY" = 0 ] && [ "$left" -lt 15 ]; then
        note "## $name: SKIPPED (the 8-minute budget is spent)"
        FAILED=1
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local started=$SECONDS rc
    echo "### $name: $*" >> "$LOG"
    if [ "$DRY" = 1 ]; then
        "$@" "$check" >> "$LOG" 2>&1
    else
        timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    fi
    rc=$?
    local status=ok
    [ "$rc" = 0 ] || { status="FAILED (exit $rc$([ "$rc" = 124 ] && echo ", over its ${limit} s"))"; FAILED=1; }
    note "## $name: $status in $((SECONDS - started)) s"
    # the figure lines of this step's output: key=value lines, pytest's summary, the benchmarks' comparisons
    sed -n "/^### $name: /,\$p" "$LOG" | grep -iE '=|passed|failed|skipped|error| vs |ratio' \
        | grep -v '^### ' | tail -n 25 >> "$RESULTS"
}

note "# StrokeSeg GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$DRY" = 0 ]; then
    if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
        SITE=/tmp/strokeseg-site
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$WHEELS"/*.whl >> "$LOG" 2>&1 || note "installing the wheels in $WHEELS failed (see the log)"
        export PYTHONPATH="$PYTHONPATH:$SITE"
    fi
    note "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
    if ! "$PY" - >> "$RESULTS" 2>> "$LOG" <<'EOF'
import platform
import torch
assert torch.cuda.is_available(), "torch sees no GPU"
print(f"python={platform.python_version()} torch={torch.__version__} cuda={torch.version.cuda} "
      f"gpu={torch.cuda.get_device_name()} capability={torch.cuda.get_device_capability()}")
import SimpleITK, nibabel, monai
print(f"SimpleITK={SimpleITK.Version_VersionString()} nibabel={nibabel.__version__} monai={monai.__version__}")
EOF
    then
        note "no usable GPU, or SimpleITK / nibabel / MONAI missing (carry their wheels in $WHEELS): see $LOG"
        exit 1
    fi
else
    note "dry run: nothing is measured"
    ls "$WHEELS"/*.whl > /dev/null 2>&1 && note "wheels to install: $(ls "$WHEELS"/*.whl | xargs -n1 basename | tr '\n' ' ')" \
        || note "no wheels in $WHEELS (a real run needs SimpleITK, nibabel and MONAI there)"
fi

step cuda-tests 150 --collect-only "$PY" -m pytest -q -p no:cacheprovider -m cuda Testing
step inference-bundled 60 --dry-run "$PY" bench/inference.py --device cuda --model "$BUNDLED_MODEL" \
    --cases isles --batch-size 4 --repeats 3
step inference-default 90 --dry-run "$PY" bench/inference.py --device cuda --cases isles,large --batch-size 4 \
    --repeats 2
step training 120 --dry-run "$PY" bench/training.py --device cuda --features 16,32,64,128,256 --patch 64,96,96 \
    --batch 2 --steps 30 --data-steps 30 --warmup 5 --workers 6 --threads 4
step ddp-torchrun 100 --dry-run "$PY" bench/ddp_smoke.py --device cuda --processes 1 --timeout 45

note "# total $SECONDS s; $([ "$FAILED" = 0 ] && echo 'every step succeeded' || echo 'SOME STEPS FAILED')"
exit "$FAILED"
