#!/usr/bin/env bash
# Download the wheels in wheels.txt for the device machine (Python 3.12, x86-64 manylinux) into
# benchmarks/device/.whl (git-ignored; named in the device tool's `carry`). No dependencies are
# resolved: wheels.txt lists every package the image lacks.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
mkdir -p "$here/.whl"
grep -v '^#' "$here/wheels.txt" | grep -v '^$' | while read -r req; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$here/.whl" "$req"
done
ls -la "$here/.whl"
