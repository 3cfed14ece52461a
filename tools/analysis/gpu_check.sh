#!/usr/bin/env bash
# GPU check of RS-vHeat, end to end in one call (issue 16, point 3).
#
# For a GPU machine that has PyTorch (with CUDA) and the usual scientific
# packages (numpy, scipy, opencv, matplotlib, Pillow, PyYAML) but no
# OpenMMLab and no internet. Steps, within a wall-time budget (--budget,
# default 480 s):
#   1. install mmengine, mmcv-lite (pure Python, no compiled ops: backbones
#      need none) and mmpretrain, plus the small pure-Python packages they
#      import, from the wheels in tools/analysis/gpu_wheels/ into a temporary
#      site directory put on PYTHONPATH (the system's packages are untouched;
#      a wheel whose distribution is already installed is not installed again);
#   2. preflight: torch, CUDA, the OpenMMLab versions, `import rsvheat_mm`
#      (exit 2 if unusable);
#   3. device checks (benchmarking/device_checks.py): CUDA vs CPU parity of
#      RS-vHeat-B forward and backward in fp32 at 768 px, then fp16 and bf16
#      autocast training steps at 1024 px, which must stay finite;
#   4. benchmark (benchmark.py --device cuda --order size): RS-vHeat-B,
#      ViT-B/16, Swin-B and ViTSAM-B at 512, 1024 and 2048 px, inference and
#      a training step, fp32 then bf16 autocast (60 % / 40 % of the time
#      left); what is predicted not to fit is skipped and listed;
#   5. summary.md (every table), gpu_check.log and results.tar.gz (all JSON,
#      Markdown and PNG, also left in details/ unless $OUT is set: a tool that
#      fetches $OUT then gets three files) in the output folder: --out, else
#      $OUT, else work_dirs/gpu_check.
# Exit status: 0 all checks passed, 1 a check failed or a step broke,
# 2 the environment is not usable (nothing measured).
#
# Usage:
#   tools/analysis/gpu_check.sh --fetch-wheels [--python-version 3.12] [--binary]
#       on a machine with PyPI access: fill tools/analysis/gpu_wheels/ (git-
#       ignored, about 6 MB; --binary adds numpy, scipy, opencv, matplotlib,
#       Pillow and PyYAML for that Python, about 110 MB, for a machine that
#       lacks them)
#   tools/analysis/gpu_check.sh [--budget S] [--out DIR] [--wheels DIR]
#       on the GPU machine, from anywhere (paths are relative to this file)
#   tools/analysis/gpu_check.sh --dry-run [--out DIR]
#       the same steps on CPU with toy models at 64 px (one benchmark pass,
#       fp32) and the packages of the current environment (no install unless
#       --wheels is given); the test suite runs this
#       (tests/test_benchmark/test_gpu_check.py)
#
# Environment: PYTHON (the interpreter, default python3), OUT (output folder),
# GPU_CHECK_MODELS (default "rsvheat-base vit-b16 swin-b vitsam-b"),
# GPU_CHECK_AMPS (default "none bf16"; the dry run "none").
#
# The wheels folder is ignored by git, so a tool that copies the working
# tree to the GPU machine must be told to bring it: carry the path
# `tools/analysis/gpu_wheels` (docs/benchmark.md, "GPU check").
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}
WHEELS=$HERE/gpu_wheels
WHEELS_GIVEN=0
BUDGET=480
DRY=0
FETCH=0
BINARY=0
PYVER=3.12
OUT_DIR=${OUT:-$ROOT/work_dirs/gpu_check}

# Pure-Python wheels: the OpenMMLab packages and what they import that a
# PyTorch image may lack. Pinned: the versions this script was tested with.
PURE_WHEELS=(
    mmengine==0.10.7 mmcv-lite==2.1.0 mmpretrain==1.2.0
    addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0
    rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
    einops==0.8.2 importlib-metadata==8.9.0 zipp==4.1.2 mat4py==0.6.0
    modelindex==0.0.2 model-index==0.1.11 markdown==3.11.3 ordered-set==4.1.0
    click==8.5.1 prettytable==3.18.0 wcwidth==0.3.5 tifffile==2026.11.8
)
# Compiled packages rsvheat_mm and OpenMMLab need (--fetch-wheels --binary).
BINARY_WHEELS=(numpy scipy matplotlib contourpy cycler fonttools kiwisolver pyparsing
               python-dateutil six packaging pillow pyyaml opencv-python-headless)
# Always installed from the folder (the versions under test), even if present.
OPENMMLAB=(mmengine mmcv-lite mmpretrain)

usage() { sed -n "2,$(( $(grep -n '^set -uo' "${BASH_SOURCE[0]}" | cut -d: -f1) - 1 ))p" "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --fetch-wheels) FETCH=1 ;;
        --binary) BINARY=1 ;;
        --python-version) PYVER=$2; shift ;;
        --dry-run) DRY=1 ;;
        --budget) BUDGET=$2; shift ;;
        --out) OUT_DIR=$2; shift ;;
        --wheels) WHEELS=$2; WHEELS_GIVEN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# -- --fetch-wheels -----------------------------------------------------------
if [ $FETCH = 1 ]; then
    mkdir -p "$WHEELS"
    plat=(--python-version "$PYVER" --implementation cp --platform manylinux2014_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
    echo "gpu_check: downloading ${#PURE_WHEELS[@]} pure-Python wheels into $WHEELS"
    "$PY" -m pip download --no-deps --only-binary=:all: "${plat[@]}" -d "$WHEELS" \
        "${PURE_WHEELS[@]}" || { echo "gpu_check: pip download failed" >&2; exit 2; }
    if [ $BINARY = 1 ]; then
        echo "gpu_check: downloading compiled wheels for CPython $PYVER (large)"
        "$PY" -m pip download --no-deps --only-binary=:all: "${plat[@]}" -d "$WHEELS" \
            "${BINARY_WHEELS[@]}" || { echo "gpu_check: pip download failed" >&2; exit 2; }
    fi
    du -sh "$WHEELS"
    echo "gpu_check: done; carry tools/analysis/gpu_wheels to the GPU machine"
    exit 0
fi

# -- the run ------------------------------------------------------------------
START=$(date +%s)
DEADLINE=$((START + BUDGET))
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG=$OUT_DIR/gpu_check.log
DETAILS=$OUT_DIR/details
rm -rf "$DETAILS" && mkdir -p "$DETAILS"
exec > >(tee "$LOG") 2>&1
left() { echo $((DEADLINE - $(date +%s))); }
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*"; }
STATUS=0
say "budget ${BUDGET}s, output $OUT_DIR, $([ $DRY = 1 ] && echo 'DRY RUN on CPU' || echo 'CUDA run')"

SITE=""
cleanup() { [ -n "$SITE" ] && rm -rf "$SITE"; }
trap cleanup EXIT

# 1. install into a temporary site directory
if [ $DRY = 0 ] || [ $WHEELS_GIVEN = 1 ]; then
    shopt -s nullglob
    wheels=("$WHEELS"/*.whl)
    if [ ${#wheels[@]} = 0 ]; then
        say "no wheels in $WHEELS: run 'tools/analysis/gpu_check.sh --fetch-wheels' on a" \
            "machine with PyPI access and carry tools/analysis/gpu_wheels"
        exit 2
    fi
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/rsvheat_gpu_site.XXXXXX")
    # A wheel is installed unless its distribution is already there (the
    # OpenMMLab three always are, so the versions under test are used).
    todo=$("$PY" - "${OPENMMLAB[*]}" "${wheels[@]}" <<'EOF'
import os, re, sys
from importlib.metadata import PackageNotFoundError, version
always = {re.sub(r'[-_.]+', '-', n).lower() for n in sys.argv[1].split()}
for path in sys.argv[2:]:
    dist = re.sub(r'[-_.]+', '-', os.path.basename(path).split('-')[0]).lower()
    try:
        have = version(dist)
    except PackageNotFoundError:
        have = None
    if have is None or dist in always:
        print(path)
    else:
        print(f'keep {dist} {have} (installed)', file=sys.stderr)
EOF
)
    mapfile -t todo <<<"$todo"
    say "installing ${#todo[@]} wheel(s) into $SITE"
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --disable-pip-version-check --target "$SITE" "${todo[@]}" || {
            say "pip install failed"; exit 2; }
    else  # no pip: a pure-Python wheel is a zip of the site directory's layout
        for w in "${todo[@]}"; do "$PY" -m zipfile -e "$w" "$SITE" || exit 2; done
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# rsvheat_mm from this checkout, the benchmarking package beside this script.
export PYTHONPATH="$ROOT:$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ $DRY = 1 ]; then
    CHECK_ARGS=(--device cpu --reference cpu --reference-dct-impl fft --arch tiny-test
                --parity-size 64 --amp-size 64)
    BENCH_ARGS=(--device cpu --tiny --threads 2 --sizes 64 --warmup 1 --iters 1
                --fresh-forwards 1)
else
    CHECK_ARGS=(--device cuda --reference cpu --arch base --parity-size 768 --amp-size 1024)
    BENCH_ARGS=(--device cuda --sizes 512 1024 2048 --warmup 2 --iters 5 --fresh-forwards 2
                --mem-budget 120)
fi
MODELS=(${GPU_CHECK_MODELS:-rsvheat-base vit-b16 swin-b vitsam-b})
# The dry run rehearses one pass (the --amp path is the same code; the device
# checks run both autocast dtypes).
AMPS=(${GPU_CHECK_AMPS:-$([ $DRY = 1 ] && echo none || echo none bf16)})

# 2.+3. preflight (versions, CUDA, import rsvheat_mm), then the device checks:
# at most 35 % of the budget
CHECK_END=$((START + BUDGET * 35 / 100))
say "preflight and device checks (until +$((CHECK_END - START))s)"
timeout --kill-after=10 $((CHECK_END - $(date +%s) + 30)) \
    "$PY" -m benchmarking.device_checks "${CHECK_ARGS[@]}" --deadline "$CHECK_END" \
    --out "$DETAILS"
rc=$?
case $rc in
    0) say "device checks passed" ;;
    1) say "device checks FAILED (device_checks.md)"; STATUS=1 ;;
    2) say "environment not usable (see above): nothing measured"; exit 2 ;;
    *) say "device checks broke (exit $rc)"; STATUS=1 ;;
esac

# 4. benchmarks: the time left (less 20 s for the summary), shared by the
# passes; the first (fp32) gets 60 % when two remain
n=${#AMPS[@]}
for amp in "${AMPS[@]}"; do
    share=$(( ($(left) - 20) * (n == 2 ? 6 : 10) / (n == 2 ? 10 : 10 * n) ))
    n=$((n - 1))
    if [ "$share" -lt 15 ]; then
        say "benchmark --amp $amp skipped: ${share}s of the budget left for it"
        continue
    fi
    tag=$([ "$amp" = none ] && echo fp32 || echo "$amp")
    say "benchmark $tag: ${MODELS[*]}, run budget ${share}s"
    timeout --kill-after=10 $((share + 60)) \
        "$PY" "$HERE/benchmark.py" "${BENCH_ARGS[@]}" --models "${MODELS[@]}" \
        --modes infer train --amp "$amp" --order size --run-budget "$share" \
        --baseline vit-b16 --out-dir "$DETAILS" --name "benchmark_$tag"
    rc=$?
    [ $rc = 0 ] || { say "benchmark $tag broke (exit $rc)"; STATUS=1; }
done

# 5. summary and archive
{
    echo "# GPU check of RS-vHeat ($([ $DRY = 1 ] && echo 'dry run on CPU' || echo CUDA))"
    echo
    echo "- $(date -Is), $(( $(date +%s) - START )) s of a ${BUDGET} s budget, exit status $STATUS"
    echo "- command: tools/analysis/gpu_check.sh; log: gpu_check.log; every number:" \
         "results.tar.gz"
    echo
    for f in "$DETAILS"/device_checks.md "$DETAILS"/benchmark_*.md; do
        [ -f "$f" ] && { sed 's/^#/##/' "$f"; echo; }
    done
} > "$OUT_DIR/summary.md"
tar -czf "$OUT_DIR/results.tar.gz" -C "$DETAILS" . || STATUS=1
[ -n "${OUT:-}" ] && rm -rf "$DETAILS"
say "done in $(( $(date +%s) - START ))s, exit status $STATUS; $OUT_DIR/summary.md"
exit $STATUS
