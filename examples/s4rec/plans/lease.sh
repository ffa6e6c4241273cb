#!/usr/bin/env bash
# One call of a lent GPU, end to end, inside a fixed number of seconds.
#
#   bash examples/s4rec/plans/lease.sh SECONDS PLAN|- [bench|compile|bench+compile|none]
#
# In order: check the card and the package; with "bench", the GPU-only no-host-sync test
# (tests/test_sync_cuda.py) and the eager step benchmark (benchmarks/bench_step.py --device cuda);
# then the PLAN's runs (none for -) side by side through examples/s4rec/batch.py, one per line, each given a
# --max-minutes budget that ends it (best checkpoint tested) before SECONDS run out; a run that
# an earlier call on the same (warm) machine left killed or cut by its budget in runs/ ($LEASE_WORK)
# is resumed, one that stopped early or at its epoch cap is kept; with "compile", last, the
# torch.compile + bf16 step benchmark in what time is left. What it makes goes into two archives, because a lent machine sends back only a few
# files: $OUT/lease.tar.gz (results.json and log of each run, benchmark JSON and logs, the
# machine) and $OUT/runs.tar.gz (the run folders without checkpoints). Data: ../shared/data, or the dataset files
# carried in .gpudata/ (copied there first).
set -u
DEVICE=${LEASE_DEVICE:-cuda}   # LEASE_DEVICE=cpu: a dry run of this script on a machine without a GPU
T0=$(date +%s)
USAGE="usage: lease.sh SECONDS PLAN|- [bench|compile|bench+compile|none]"
SECONDS_BUDGET=${1:?$USAGE}
PLAN=${2:?$USAGE}
MODE=${3:-bench}
OUTDIR=${OUT:-lease-out}
PYTHON=${PYTHON:-python3}     # the machine's Python with torch
WORK=${LEASE_WORK:-runs}       # run folders (checkpoints stay there; a warm machine keeps them)
WORKDIR=$(mktemp -d)
mkdir -p "$OUTDIR"
left() { echo $(( T0 + SECONDS_BUDGET - $(date +%s) )); }
pack() {
    tar czf "$OUTDIR/lease.tar.gz" -C "$WORKDIR" . 2>/dev/null
    [ -d "$WORK" ] && tar czf "$OUTDIR/runs.tar.gz" --exclude='*.pt' -C "$(dirname "$WORK")" "$(basename "$WORK")" 2>/dev/null
    echo "packed $(ls "$OUTDIR")"
}
trap pack EXIT
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
if [ ! -f ../shared/data/Beauty.txt ] && [ -d .gpudata ]; then   # bench_step reads ../shared/data/Beauty.txt
    mkdir -p ../shared/data && cp .gpudata/*.txt ../shared/data/
fi
DATA_ROOT=../shared/data
[ -f "$DATA_ROOT/Beauty.txt" ] || DATA_ROOT=.gpudata
{ nvidia-smi; "$PYTHON" -c "import torch, s4rec_components, einops; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if '$DEVICE' == 'cuda' else 'cpu')"; } \
    > "$WORKDIR/machine.txt" 2>&1 || { cat "$WORKDIR/machine.txt"; exit 1; }
tail -n 1 "$WORKDIR/machine.txt"
echo "commit: ${S4REC_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}" | tee -a "$WORKDIR/machine.txt"

if [[ "$MODE" == *bench* ]]; then
    timeout 45 "$PYTHON" -m pytest tests/test_sync_cuda.py -q -p no:cacheprovider -o addopts= > "$WORKDIR/test_sync_cuda.log" 2>&1
    echo "test_sync_cuda: exit $? ($(tail -n 1 "$WORKDIR/test_sync_cuda.log"))"
    timeout 75 "$PYTHON" benchmarks/bench_step.py --device "$DEVICE" --output "$WORKDIR/bench-$DEVICE.json" > "$WORKDIR/bench-$DEVICE.log" 2>&1
    echo "bench eager: exit $?"; tail -n 1 "$WORKDIR/bench-$DEVICE.log"
fi

RESERVE=$([[ "$MODE" == *compile* ]] && echo 100 || echo 15)   # seconds kept for the last step and packing
TRAIN_S=$(( $(left) - RESERVE ))
if [ "$PLAN" != - ] && [ "$TRAIN_S" -gt 90 ]; then
    JOBS=$(grep -cv '^\s*\(#\|$\)' "$PLAN")
    # a run's budget ends its training; its start-up, last epoch and test fit in the 75 s kept
    MINUTES=$("$PYTHON" -c "print(round(($TRAIN_S - 75) / 60, 2))")
    echo "training: $JOBS runs at once, --max-minutes $MINUTES, hard stop after $TRAIN_S s"
    timeout "$TRAIN_S" "$PYTHON" examples/s4rec/batch.py --plan "$PLAN" --jobs "$JOBS" --work "$WORK" \
        --output "$WORKDIR/runs" -- --device "$DEVICE" --threads 2 --data-root "$DATA_ROOT" --max-minutes "$MINUTES" \
        2>&1 | tee "$WORKDIR/batch.log"
fi

if [[ "$MODE" == *compile* ]] && [ "$(left)" -gt 30 ]; then
    timeout $(( $(left) - 10 )) "$PYTHON" benchmarks/bench_step.py --device "$DEVICE" --compile --amp bf16 --quick --no-eval \
        --output "$WORKDIR/bench-$DEVICE-compile-bf16.json" > "$WORKDIR/bench-$DEVICE-compile.log" 2>&1
    echo "bench compile: exit $?"; tail -n 1 "$WORKDIR/bench-$DEVICE-compile.log"
fi
