#!/usr/bin/env bash
# Single host, CPU only (debugging, small runs): one process, all cores.
#   launch/cpu.sh configs/dtn.py:digits runs/dtn [--config.x=y ...]
# Sets GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (appended to any tunables already set): XLA:CPU allocates
# its temporary buffers afresh at every step, and with 4 KiB pages the kernel faults and zeroes each
# page on first touch; transparent huge pages cut the faults ~200-fold. Measured here (2 cores): a
# CycleGAN step at 128 px 1.50 -> 1.29-1.32 s; PyTorch's originals are unaffected; small networks gain
# little. glibc < 2.35 ignores the tunable, and so does a kernel with transparent huge pages 'never'.
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1; workdir=$2; shift 2
[ -x .venv/bin/python ] || bash launch/setup.sh
case ":${GLIBC_TUNABLES:-}:" in
  *:glibc.malloc.hugetlb=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
exec .venv/bin/python -m translate.train --config="$config" --workdir="$workdir" "$@"
