#!/usr/bin/env bash
# One-command installer for rsvheat_mm (run by `make install`).
#
# Creates a venv at the repository root and installs torch + torchvision, an
# OpenMMLab stack (mmcv compiled from its sdist with its C++ ops), the
# runtime/test requirements and rsvheat_mm in editable mode. Idempotent: a
# second run only checks and exits. The compiled mmcv wheel is cached outside
# the repository (RSVHEAT_CACHE) so a fresh clone on the same machine installs
# in minutes.
#
# Two stacks (README "Installation"):
#   RSVHEAT_STACK=official  (default) the pinned official set of
#                           requirements/mminstall.txt, mmcv 2.0.1, in .venv/
#   RSVHEAT_STACK=onedl     the maintained OneDL forks of
#                           requirements/mminstall-onedl.txt, onedl-mmcv 2.3.6,
#                           in .venv-onedl/
#
# Environment knobs:
#   RSVHEAT_STACK  official | onedl                          (default official)
#   PYTHON         interpreter used to create the venv       (default python3)
#   RSVHEAT_VENV   venv location                  (default <repo>/.venv or .venv-onedl)
#   RSVHEAT_CACHE  cache for the compiled mmcv wheel         (default ~/.cache/rsvheat_mm)
#   TORCH_SPEC     pip spec for torch + torchvision          (default torch==2.14.1 torchvision==0.29.1)
#   MAX_JOBS       parallel compile jobs for mmcv            (default: number of cores)
#   FORCE_CUDA=1   build mmcv's CUDA ops even if no GPU is visible (needs nvcc)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${RSVHEAT_STACK:-official}
case $STACK in
    official)
        DEFAULT_VENV=$ROOT/.venv
        MMREQ=$ROOT/requirements/mminstall.txt
        MMCV_DIST=mmcv MMCV_VERSION=2.0.1 MMENGINE_DIST=mmengine
        MIN_PY=3.8 ;;
    onedl)
        DEFAULT_VENV=$ROOT/.venv-onedl
        MMREQ=$ROOT/requirements/mminstall-onedl.txt
        MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6 MMENGINE_DIST=onedl-mmengine
        MIN_PY=3.10 ;;
    *)
        printf "install: ERROR: RSVHEAT_STACK='%s' is not a stack; use 'official' (default) or 'onedl'\n" "$STACK" >&2
        exit 1 ;;
esac
# The sdist's file/folder name (PEP 625 normalisation: onedl-mmcv -> onedl_mmcv).
MMCV_SDIST=${MMCV_DIST//-/_}-$MMCV_VERSION
VENV=${RSVHEAT_VENV:-$DEFAULT_VENV}
PYTHON=${PYTHON:-python3}
CACHE=${RSVHEAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rsvheat_mm}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
START=$(date +%s)

step() { printf '==> [install %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { printf 'install: ERROR: %s\n' "$*" >&2; exit 1; }

# Everything that decides what gets installed: a change re-runs the install.
STAMP_SRC=$( (echo "$STACK"; cat "$ROOT"/requirements/*.txt "$ROOT/scripts/install.sh" "$ROOT/setup.py") | sha1sum | cut -c1-16)
STAMP_FILE=$VENV/.rsvheat_install_stamp
VPY=$VENV/bin/python
PIP=("$VPY" -m pip --disable-pip-version-check)

check_imports() {
    "$VPY" - "$MMCV_VERSION" <<'EOF_PY' >/dev/null 2>&1
import sys
import mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain, mmrotate, rsvheat_mm
assert mmcv.__version__ == sys.argv[1]
EOF_PY
}

if [[ -x $VPY && -f $STAMP_FILE && $(cat "$STAMP_FILE") == "$STAMP_SRC" ]] && check_imports; then
    step "$STACK environment in $VENV is up to date (delete $STAMP_FILE to force a re-install)"
    exit 0
fi
step "installing the $STACK OpenMMLab stack into $VENV"

# --- 1. virtual environment --------------------------------------------------
command -v "$PYTHON" >/dev/null || die "interpreter '$PYTHON' not found; set PYTHON=/path/to/python3.11"
"$PYTHON" - "$MIN_PY" <<'EOF_PY' || die "the $STACK stack needs Python >= $MIN_PY (3.11 recommended); set PYTHON=/path/to/python3.11"
import sys; sys.exit(sys.version_info[:2] < tuple(int(v) for v in sys.argv[1].split('.')))
EOF_PY
if [[ ! -x $VPY ]]; then
    step "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create a venv (on Debian: apt install python3-venv)"
fi
# setuptools<81: mmcv 2.0.1's setup.py needs pkg_resources, removed in
# setuptools 82; 81 warns on every import. onedl-mmcv's build needs >=80.
SETUPTOOLS_PIN="setuptools>=69,<81"
step "bootstrapping pip/setuptools/wheel/ninja"
"${PIP[@]}" install -q "pip>=23" "$SETUPTOOLS_PIN" wheel ninja psutil "packaging>=24.2"

# --- 2. torch + torchvision --------------------------------------------------
if ! "$VPY" -c "import torch, torchvision" >/dev/null 2>&1; then
    step "installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_SPEC || die "could not install '$TORCH_SPEC' (set TORCH_SPEC to a torch/torchvision pair for your CUDA)"
fi
read -r TORCH_VER TORCH_CUDA CUDA_OK < <("$VPY" -c "import torch; print(torch.__version__.split('+')[0], torch.version.cuda or 'cpu', int(torch.cuda.is_available()))")
step "torch $TORCH_VER (CUDA build: $TORCH_CUDA, GPU visible: $CUDA_OK)"
# torch pulls the newest setuptools; put the pin back for the mmcv build.
"${PIP[@]}" install -q "$SETUPTOOLS_PIN"

# --- 3. mmcv compiled with ops, cached ----------------------------------------
mmcv_ok() { "$VPY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; }
if ! mmcv_ok; then
    WITH_CUDA=0
    if [[ $CUDA_OK == 1 || ${FORCE_CUDA:-0} == 1 ]]; then WITH_CUDA=1; fi
    PYTAG=$("$VPY" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    KEY="$MMCV_DIST-$MMCV_VERSION-torch$TORCH_VER-$TORCH_CUDA-ops$( [[ $WITH_CUDA == 1 ]] && echo cuda || echo cpu)-$PYTAG-$(uname -m)"
    WHEEL_DIR=$CACHE/wheels/$KEY
    WHEEL_GLOB="${MMCV_DIST//-/_}-*.whl"
    # shellcheck disable=SC2086
    WHEEL=$(ls "$WHEEL_DIR"/$WHEEL_GLOB 2>/dev/null | head -n1 || true)
    if [[ -z $WHEEL ]]; then
        CXX_BIN=${CXX:-g++}
        command -v "$CXX_BIN" >/dev/null || die "no C++ compiler ('$CXX_BIN') found: $MMCV_DIST $MMCV_VERSION has no Linux wheels and must be compiled (Debian/Ubuntu: apt install g++)"
        if [[ $WITH_CUDA == 1 ]] && ! command -v nvcc >/dev/null; then
            die "a GPU is visible but nvcc is not on PATH: install the CUDA toolkit matching torch ($TORCH_CUDA) or set CUDA_VISIBLE_DEVICES= to build CPU-only ops"
        fi
        # The C++ standard the installed torch headers demand (mmcv forces
        # c++14, onedl-mmcv c++17; torch 2.14's headers need C++20).
        CXXSTD=$("$VPY" - <<'EOF_PY'
import os, re, torch
hdr = os.path.join(os.path.dirname(torch.__file__), 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'all.h')
m = re.search(r'#error C\+\+(\d+)', open(hdr).read()) if os.path.exists(hdr) else None
if m:
    print(m.group(1))
else:
    major, minor = (int(v) for v in torch.__version__.split('.')[:2])
    print('20' if (major, minor) >= (2, 14) else '17')
EOF_PY
)
        BUILD=$(mktemp -d "${TMPDIR:-/tmp}/rsvheat-mmcv-build.XXXXXX")
        LOG=$CACHE/logs/$KEY.log
        mkdir -p "$CACHE/logs" "$CACHE/wheels"
        step "downloading the $MMCV_DIST $MMCV_VERSION sdist"
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "$MMCV_DIST==$MMCV_VERSION" -d "$BUILD" \
            || die "could not download the $MMCV_DIST $MMCV_VERSION sdist from the package index"
        tar -xzf "$BUILD/$MMCV_SDIST.tar.gz" -C "$BUILD"
        SRC=$BUILD/$MMCV_SDIST
        # Raise every hard-coded -std=c++14/17 (CPU and nvcc flags) to the
        # standard torch demands; MSVC flags (/std:) are left alone.
        sed -i -E "s/-std=c\+\+1[47]/-std=c++$CXXSTD/g" "$SRC/setup.py"
        grep -q -- "-std=c++$CXXSTD" "$SRC/setup.py" || die "could not patch $MMCV_DIST's setup.py for C++$CXXSTD"
        JOBS=${MAX_JOBS:-$(nproc)}
        step "compiling $MMCV_DIST $MMCV_VERSION ops (C++$CXXSTD, $( [[ $WITH_CUDA == 1 ]] && echo 'CPU+CUDA' || echo 'CPU') kernels, $JOBS jobs; 10-20 min on 2 cores; log: $LOG)"
        (
            cd "$SRC"
            export MMCV_WITH_OPS=1 MAX_JOBS=$JOBS
            [[ $WITH_CUDA == 1 ]] && export FORCE_CUDA=1
            "${PIP[@]}" wheel -v --no-build-isolation --no-deps -w "$BUILD/dist" . >"$LOG" 2>&1
        ) &
        BUILD_PID=$!
        # Progress from ninja's [done/total] lines while the compiler runs.
        while kill -0 "$BUILD_PID" 2>/dev/null; do
            sleep 30
            PROG=$(grep -oE '^\s*\[[0-9]+/[0-9]+\]' "$LOG" 2>/dev/null | tail -n1 | tr -d ' ' || true)
            step "  $MMCV_DIST build running ${PROG:-(configuring)}"
        done
        if ! wait "$BUILD_PID"; then
            tail -n 40 "$LOG" >&2
            die "$MMCV_DIST $MMCV_VERSION failed to compile (full log: $LOG). Check the compiler (g++ >= 10 for C++$CXXSTD) and that torch's headers match."
        fi
        step "compiled $MMCV_DIST $MMCV_VERSION"
        mkdir -p "$WHEEL_DIR.tmp.$$"
        # shellcheck disable=SC2086
        mv "$BUILD"/dist/$WHEEL_GLOB "$WHEEL_DIR.tmp.$$/"
        # Atomic publish: a half-written cache entry is never visible.
        mv -T "$WHEEL_DIR.tmp.$$" "$WHEEL_DIR" 2>/dev/null || rm -rf "$WHEEL_DIR.tmp.$$"
        rm -rf "$BUILD"
        # shellcheck disable=SC2086
        WHEEL=$(ls "$WHEEL_DIR"/$WHEEL_GLOB | head -n1)
    else
        step "reusing cached $MMCV_DIST wheel $WHEEL"
    fi
    "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL"
    # mmcv's own runtime dependencies (mmengine pinned as in the stack's
    # requirements, addict, yapf, opencv, ...), without a rebuild:
    # 'import mmcv.ops' needs mmengine.
    MMENGINE_PIN=$(grep -E "^$MMENGINE_DIST==" "$MMREQ" || echo "$MMENGINE_DIST")
    "${PIP[@]}" install -q "$MMENGINE_PIN" addict "yapf" packaging Pillow pyyaml "opencv-python-headless>=4.6"
    mmcv_ok || die "$MMCV_DIST $MMCV_VERSION was installed but 'import mmcv.ops' fails: $("$VPY" -c 'import mmcv.ops' 2>&1 | tail -n1)"
fi

# --- 4. the OpenMMLab toolboxes and our requirements --------------------------
step "installing the $STACK OpenMMLab set ($(basename "$MMREQ")) and requirements"
"${PIP[@]}" install -q -r "$MMREQ" -r "$ROOT/requirements/runtime.txt" \
    -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/optional.txt" \
    || die "pip could not install the $STACK OpenMMLab set (requirements/$(basename "$MMREQ"))"
# mmpretrain 1.2.0 imports `transformers` when present and breaks on new releases.
if [[ $STACK == official ]] && "$VPY" -c "import transformers" >/dev/null 2>&1; then
    step "removing transformers (incompatible with mmpretrain 1.2.0)"
    "${PIP[@]}" uninstall -y -q transformers
fi

# --- 5. rsvheat_mm, editable --------------------------------------------------
step "installing rsvheat_mm (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

step "checking imports"
"$VPY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmrotate, rsvheat_mm; print('  ok: mmcv', mmcv.__version__, '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__, '| mmpretrain', mmpretrain.__version__, '| mmrotate', mmrotate.__version__, '| rsvheat_mm', rsvheat_mm.__version__)" \
    || die "the installed $STACK stack does not import (see the traceback above)"
echo "$STAMP_SRC" >"$STAMP_FILE"
step "done: activate with 'source $VENV/bin/activate'"
