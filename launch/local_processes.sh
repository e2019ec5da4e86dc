#!/usr/bin/env bash
# One multi-host run as N processes on this machine, through JAX's own distributed runtime (the same
# code path as a TPU pod or a Slurm cluster; on CPU the processes talk through gloo). Each process gets
# --coordinator_address/--num_processes/--process_id, reads its own rows of every global batch, and
# process 0 writes the logs, samples and config; all write the checkpoints (the workdir is shared).
#   launch/local_processes.sh N CONFIG WORKDIR [--config.x=y ...]
#   launch/local_processes.sh 2 configs/cyclegan.py:digits runs/digits_2proc --config.batch_size=16
# Environment:
#   CPU_DEVICES=4        CPU devices per process (XLA's host platform device count); the global
#                        batch must be a multiple of N * CPU_DEVICES.
#   GPUS_PER_PROCESS=0   >0: process i sees GPUs [i*G, (i+1)*G) (CUDA_VISIBLE_DEVICES) instead.
#   PORT=12355           the coordinator's port on 127.0.0.1.
#   DRY_RUN=1 (or --dry_run first): print the commands, run nothing.
# Process 0 prints to the terminal; process i > 0 logs to WORKDIR/process_<i>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=${DRY_RUN:-0}
if [ "${1:-}" = "--dry_run" ]; then dry_run=1; shift; fi
if [ $# -lt 3 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2
fi
n=$1; config=$2; workdir=$3; shift 3
port=${PORT:-12355}
cpu_devices=${CPU_DEVICES:-4}
gpus=${GPUS_PER_PROCESS:-0}
python=${PYTHON:-.venv/bin/python}
[ "$dry_run" = 1 ] || [ -x "$python" ] || bash launch/setup.sh

commands=()
for ((i = 0; i < n; i++)); do
  if [ "$gpus" -gt 0 ]; then
    visible=$(seq -s, $((i * gpus)) $((i * gpus + gpus - 1)))
    env_vars=(CUDA_VISIBLE_DEVICES="$visible" XLA_PYTHON_CLIENT_PREALLOCATE=false)
  else
    # glibc.malloc.hugetlb=1: far fewer page faults on XLA:CPU's per-step buffers (launch/cpu.sh)
    env_vars=(JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=$cpu_devices"
              GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1")
  fi
  cmd=(env "${env_vars[@]}" "$python" -m translate.train --config="$config" --workdir="$workdir"
       --coordinator_address="127.0.0.1:$port" --num_processes="$n" --process_id="$i" "$@")
  commands+=("$(printf '%q ' "${cmd[@]}")")
done

if [ "$dry_run" = 1 ]; then
  printf '%s\n' "${commands[@]}"
  exit 0
fi

mkdir -p "$workdir"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = n - 1; i >= 0; i--)); do
  if [ "$i" -eq 0 ]; then
    eval "${commands[0]}" & pids+=($!)
  else
    eval "${commands[$i]}" > "$workdir/process_$i.log" 2>&1 & pids+=($!)
  fi
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
