#!/usr/bin/env bash
# Accelerator check (issue 14): da3-large forward + train step, da3_jax vs the official PyTorch
# package, on one GPU in about 7 minutes (benchmarks/device_check.py says what it measures).
#   bash benchmarks/device_check.sh [--smoke] [device_check.py options]
# On the device machine: wheels the image lacks are carried in benchmarks/device/.whl
# (benchmarks/device/fetch_wheels.sh) and installed to /tmp/site first. Results go to $OUT
# when it is set (the device tool brings that folder back), else to ./device_check_out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -d benchmarks/device/.whl ] && ls benchmarks/device/.whl/*.whl >/dev/null 2>&1 \
   && ! "$PY" -c "import grain, ml_collections, depth_anything_3" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site benchmarks/device/.whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-device_check_out}"
if [ "${1:-}" = "--smoke" ]; then
  exec timeout 1500 "$PY" -m benchmarks.device_check --out "$out" "$@"
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv || true
exec timeout 470 "$PY" -m benchmarks.device_check --out "$out" "$@"
