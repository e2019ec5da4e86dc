#!/usr/bin/env bash
# A Cloud TPU pod slice: the same command runs on every host; jax.distributed.initialize() discovers the
# slice, each host reads its own shard of the data, and the step is data-parallel over all chips.
# The workdir must be shared storage (e.g. a gs:// bucket) that every host can write.
#   launch/tpu_pod.sh TPU_NAME ZONE configs/cyclegan.py:horse2zebra gs://bucket/runs/h2z --config.batch_size=64
set -euo pipefail
tpu=$1; zone=$2; config=$3; workdir=$4; shift 4
repo=${TRANSLATE_REPO:-https://example.invalid/translate.git}  # set to your clone's URL
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e
  [ -d translate ] || git clone $repo translate
  cd translate && bash launch/setup.sh && .venv/bin/python -m pip install -q 'jax[tpu]'
  .venv/bin/python -m translate.train --distributed --config=$config --workdir=$workdir $*"
