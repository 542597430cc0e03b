#!/usr/bin/env bash
# Build ./.whl: x86-64 wheels of what a CUDA machine with JAX preinstalled but no network lacks.
# That image has jax/jaxlib 0.11.x for CUDA 13, flax, optax, orbax-checkpoint, chex, numpy, scipy, absl-py,
# etils, pillow, jinja2, protobuf (Python 3.12), but not MuJoCo, MJX, brax, ml-collections, tensorboardX,
# matplotlib or pytest.
# Run on a machine with network, from the project root:  bash tools/gpu_wheelhouse.sh   (adds /.whl/ to
# .git/info/exclude). Versions: the exact pins of requirements.txt for every package listed there (the tested
# lock); a package it does not list is taken at its newest version. PYTHON_VERSION (default 3.12) selects the
# target interpreter.
# Then on the CUDA machine:  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#                            export PYTHONPATH=/tmp/site:$PWD
# Size: about 56 MB (measured 2026-12-01); keep it under 64 MiB (what a device run can carry).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
names=(mujoco mujoco-mjx brax ml-collections tensorboardX trimesh jaxopt glfw PyOpenGL websockets Flask
       flask-cors itsdangerous blinker Werkzeug matplotlib contourpy cycler fonttools kiwisolver pyparsing
       python-dateutil PyYAML pytest pluggy iniconfig)
pkgs=()
for n in "${names[@]}"; do  # the pin of requirements.txt (names compared case- and -/_-insensitively)
  pin=$(python3 - "$n" <<'PY'
import re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
want = norm(sys.argv[1])
for line in open("requirements.txt"):
  line = line.split("#")[0].strip()
  if "==" in line and norm(line.split("==")[0]) == want:
    print(line)
    break
PY
)
  pkgs+=("${pin:-$n}")
done
echo "downloading: ${pkgs[*]}"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl "${pkgs[@]}"
du -sh .whl
