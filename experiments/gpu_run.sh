#!/usr/bin/env bash
# The one command a session lent a GPU runs: experiments/bench_gpu.py's whole table.
#
# Before (here, in the checkout's root, where pip reaches PyPI): the two
# pure-Python packages ftlab's step path and the Lite0 original need that the
# GPU image lacks (ml_collections for configs/default.py; efficientnet_lite_pytorch
# for PyTorch's EfficientNet-Lite0; about 100 KB together; `/.whl/` is in .gitignore):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux1_x86_64 -d .whl ml_collections==1.1.0 efficientnet-lite-pytorch==0.1.0
#
# Their needs (absl-py, PyYAML, torch) are on the image. Nothing else on the
# step's path is missing there: clu, tensorflow, tensorflow_datasets,
# array_record and orbax are not imported by it.
#
# Then the device tool's `run`, once:
#   command: bash experiments/gpu_run.sh      carry: [".whl"]      timeout_s: 480
# (bench_gpu's --budget_s=420 plus the installs and the probe; extra arguments
# go to bench_gpu.py, e.g. `bash experiments/gpu_run.sh --budget_s=240` for a
# second, shorter try). The table is printed last; $OUT gets bench_gpu.md,
# bench_gpu.json (rewritten after every job, so a cut-short run keeps its rows)
# and bench_gpu.log.
#
# Here, without a GPU: OUT=/tmp/g bash experiments/gpu_run.sh --device_check=none \
#   --models=resnet18 --image_size=32 --batch=4 --steps=2 --warmup=1 --torch_variants=eager
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

SITE=/tmp/site
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "gpu_run: no .whl/*.whl (see this script's header); using what is installed"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv 2>&1 || echo "gpu_run: no nvidia-smi"
  "$PYTHON" - <<'EOF'
import importlib.metadata as md, sys
names = ("jax", "jaxlib", "jax-cuda13-plugin", "flax", "optax", "numpy", "torch",
         "torchvision", "triton", "ml_collections", "efficientnet-lite-pytorch")
def version(name):
  try:
    return md.version(name)
  except md.PackageNotFoundError:
    return "missing"
print("python", sys.version.split()[0], "|", ", ".join(f"{n} {version(n)}" for n in names))
EOF
} 2>&1 | tee "$OUT/bench_gpu.log"

"$PYTHON" experiments/bench_gpu.py --json="$OUT/bench_gpu.json" --markdown="$OUT/bench_gpu.md" \
  "$@" 2>&1 | tee -a "$OUT/bench_gpu.log"
