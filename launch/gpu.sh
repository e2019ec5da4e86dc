#!/usr/bin/env bash
# Single host, all local GPUs: one replica per GPU, gradients averaged (translate/parallel.py).
# The global batch (--config.batch_size) must be divisible by the number of GPUs.
#   launch/gpu.sh configs/cyclegan.py:horse2zebra runs/h2z --config.batch_size=8
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1; workdir=$2; shift 2
[ -x .venv/bin/python ] || bash launch/setup.sh
# jax[cuda] is not a default dependency: install the CUDA build once on GPU machines.
.venv/bin/python -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null \
  || .venv/bin/python -m pip install -q "jax[cuda12]"
# Let XLA take GPU memory as it needs it; TF (data side) never sees the GPUs.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec .venv/bin/python -m translate.train --config="$config" --workdir="$workdir" "$@"
