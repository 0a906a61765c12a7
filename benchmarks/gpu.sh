#!/usr/bin/env bash
# One prepared GPU run of arjax: correctness checks, then timings, as JSON lines (benchmarks/gpu.py).
#
#   bash benchmarks/gpu.sh --fetch-wheels   # here (with internet to PyPI): fill wheels/ for the GPU machine
#   bash benchmarks/gpu.sh                  # on the GPU machine (no internet): install wheels/, run
#   bash benchmarks/gpu.sh --cpu-dry-run    # anywhere: every check and timed path at tiny sizes on the CPU
#
# The GPU machine's image has JAX (CUDA), Equinox, NumPyro, Optax, jaxtyping, SciPy and tqdm; arjax also
# imports Distrax (which needs tfp-nightly, dm-tree, gast, decorator) and BlackJAX, carried as wheels for
# CPython 3.12 on manylinux x86-64 in wheels/ (about 12 MB; ignored by git). Other arguments go to gpu.py.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WHEELS="$ROOT/wheels"
PACKAGES=(distrax==0.1.9 tfp-nightly==0.26.0.dev20261027 dm-tree==0.1.10 gast==0.7.0 decorator==5.3.1 blackjax==1.7.1)
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p "$WHEELS"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "${PACKAGES[@]}"
  ls -l "$WHEELS"
  exit 0
fi

if ! "$PYTHON" -c "import distrax, blackjax" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run 'bash benchmarks/gpu.sh --fetch-wheels' first" >&2; exit 2; }
  SITE="${SITE:-/tmp/arjax-site}"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
exec "$PYTHON" "$ROOT/benchmarks/gpu.py" "$@"
