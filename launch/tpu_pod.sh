#!/usr/bin/env bash
# A Cloud TPU pod slice: the same command runs on every host; jax.distributed.initialize() discovers the
# slice (--distributed), each host reads its own rows of every global batch, and the step is
# data-parallel over all chips. The workdir must be shared storage (e.g. a gs:// bucket) that every
# host can write.
#   launch/tpu_pod.sh TPU_NAME ZONE configs/cyclegan.py:horse2zebra gs://bucket/runs/h2z --config.batch_size=64
# DRY_RUN=1 (or --dry_run first) prints the gcloud command instead of running it.
set -euo pipefail
dry_run=${DRY_RUN:-0}
if [ "${1:-}" = "--dry_run" ]; then dry_run=1; shift; fi
tpu=$1; zone=$2; config=$3; workdir=$4; shift 4
repo=${TRANSLATE_REPO:-https://example.invalid/translate.git}  # set to your clone's URL
flags=$(printf ' %q' "$@")
cmd=(gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e
  [ -d translate ] || git clone $repo translate
  cd translate && bash launch/setup.sh && .venv/bin/python -m pip install -q 'jax[tpu]'
  .venv/bin/python -m translate.train --distributed --config=$config --workdir=$workdir$flags")
if [ "$dry_run" = 1 ]; then
  printf '%s\n' "${cmd[*]}"
else
  "${cmd[@]}"
fi
