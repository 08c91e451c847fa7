"""Images in and out: Pillow reads any format; resize + centre-crop; [0, 1] RGB NCHW tensors."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from converters.errors import UserError


class ImageError(UserError):
    """An image that cannot be read."""


def demo_image() -> Path:
    """A real photograph available offline: Grace Hopper, shipped with matplotlib."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def load_image(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: shorter side resized to fit, then centre-cropped to `size`."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            h, w = size
            scale = max(h / im.height, w / im.width)
            rw, rh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
            im = im.resize((rw, rh), Image.Resampling.BICUBIC)
            left, top = (rw - w) // 2, (rh - h) // 2
            im = im.crop((left, top, left + w, top + h))
            array = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"cannot read image {path} ({type(exc).__name__}); give a PNG, JPEG or other "
                         "Pillow-readable file") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)


def load_images(paths: list[str | Path], size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1], one image per path, as `load_image`."""
    return torch.cat([load_image(p, size) for p in paths])


def to_pil(rgb01: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) in [0, 1] -> 8-bit RGB image (clipped)."""
    t = rgb01.detach().cpu()
    if t.dim() == 4:
        t = t[0]
    array = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def save_atomic(path: Path, write) -> Path:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=path.suffix)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_png(rgb01: torch.Tensor, path: str | Path) -> Path:
    return save_atomic(Path(path), lambda tmp: to_pil(rgb01).save(tmp, format="PNG"))
