"""Images in and out: Pillow reads any format; resize + centre-crop; [0, 1] RGB NCHW tensors."""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from converters.errors import UserError

log = logging.getLogger(__name__)
# what the user should know about their input: said on stderr even with --quiet (as the model's notes are)
notes = logging.getLogger("inverter.notes")
notes.setLevel(logging.INFO)


class ImageError(UserError):
    """An image that cannot be read."""


def demo_image() -> Path:
    """A real photograph available offline: Grace Hopper, shipped with matplotlib."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


MAX_ASPECT = 20.0  # longer side / shorter side an image may have
MAX_UPSCALE = 8.0  # an image smaller than 1/8 of the model's input (per side) is refused
NOTE_UPSCALE = 2.0  # from this factor on, the upscaling is said
MAX_PIXELS = 100_000_000  # an image larger than this is refused before it is decoded (Pillow bombs start at 89 M)


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16/32-bit integer and float grey scaled by their real range
    (Pillow's own convert clips `I;16` to 255: a 16-bit PNG would come out white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") else None
        if top is None:  # 32-bit integer or float: 16-bit data stored wide is common (PNG I), else min-max
            lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
            if im.mode == "I" and lo >= 0 and hi <= 65535:
                top = 65535.0 if hi > 255 else 255.0
            elif im.mode == "F" and lo >= 0 and hi <= 1:
                top = 1.0
            else:
                array, top = array - lo, max(hi - lo, 1e-12)
        grey = np.clip(np.nan_to_num(array) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return im.convert("RGB")


def check_image_shape(width: int, height: int, path: Path | str = "image") -> None:
    """Refuse what would cost far more than the image is worth: absurd aspect ratios and pixel counts."""
    if width < 1 or height < 1:
        raise ImageError(f"image {path} is empty ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
                         f"{MAX_PIXELS // 1_000_000}-megapixel limit; resize it first")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageError(f"image {path} is {width}x{height}: its aspect ratio is over {MAX_ASPECT:g}:1; "
                         "crop it to the region to use first")


def check_upscale(width: int, height: int, size: tuple[int, int], path: Path | str = "image") -> float:
    """The factor a width x height crop is enlarged by to reach `size`: past MAX_UPSCALE the image is refused
    (its pixels would be made up), from NOTE_UPSCALE on it is said in a note (logged)."""
    h, w = size
    factor = max(h / height, w / width)
    if factor > MAX_UPSCALE:
        need_h, need_w = math.ceil(h / MAX_UPSCALE), math.ceil(w / MAX_UPSCALE)
        raise ImageError(f"image {path} is {width}x{height}, too small for the model's {h}x{w} input (it would be "
                         f"upscaled {factor:.3g}x, over {MAX_UPSCALE:g}x): give an image of at least "
                         f"{need_w}x{need_h}, or a smaller --size where the model allows")
    if factor >= NOTE_UPSCALE:
        notes.warning("note: image %s (%dx%d) is upscaled %.3gx to the model's %dx%d input: what it shows at that "
                    "scale is made up by the resize", path, width, height, factor, h, w)
    return factor


def load_image(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: centre-cropped to the aspect ratio of `size` (work bounded by
    the crop, never by the raw image), then resized to `size`."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            check_image_shape(im.width, im.height, path)
            h, w = size
            # the largest centred box of the target's aspect ratio, cropped before any resize
            box_w, box_h = min(im.width, im.height * w / h), min(im.height, im.width * h / w)
            box_w, box_h = max(1, round(box_w)), max(1, round(box_h))
            check_upscale(box_w, box_h, size, path)
            left, top = (im.width - box_w) // 2, (im.height - box_h) // 2
            im = im.crop((left, top, left + box_w, top + box_h))
            im = _to_rgb(im)
            im = im.resize((w, h), Image.Resampling.BICUBIC)
            array = np.asarray(im, dtype=np.float32) / 255.0
    except Image.DecompressionBombError:
        raise ImageError(f"image {path} is too large to decode safely (Pillow's decompression-bomb limit); "
                         "resize it first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot read image {path} ({type(exc).__name__}); give a PNG, JPEG or other "
                         "Pillow-readable file") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)


def load_images(paths: list[str | Path], size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1], one image per path, as `load_image`."""
    return torch.cat([load_image(p, size) for p in paths])


def to_pil(rgb01: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) in [0, 1] -> 8-bit image (clipped): grey ("L") when the three channels
    are equal (what a one-channel network gives), else RGB."""
    t = rgb01.detach().cpu()
    if t.dim() == 4:
        t = t[0]
    array = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    if (array[..., :1] == array[..., 1:]).all():
        return Image.fromarray(array[..., 0])  # uint8 (H, W): mode L
    return Image.fromarray(array)


class DiskFullError(UserError):
    """The output folder's file system has no room for the results."""


NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_pending: list[tuple[Path, object]] | None = None  # inside `all_or_nothing`: the files it will write


@contextlib.contextmanager
def all_or_nothing():
    """Files saved inside are written together at its end: all of them, after checking that they fit
    on their file system, or none (the files already there stay as they were)."""
    global _pending
    if _pending is not None:  # nested: the outer one writes
        yield
        return
    _pending = []
    try:
        yield
        batch = _pending
        _pending = None
        _write_files(batch)
    finally:
        _pending = None


def _no_room(folder: Path, needed: int | None, free: int | None) -> DiskFullError:
    size = f"the results need {needed} bytes" if needed else "the results need more room"
    have = f", {free} free" if free is not None else ""
    return DiskFullError(f"no space left in {folder}: {size}{have}; free some space or choose another --out "
                         "(nothing was written there)")


def _write_files(items: list[tuple[Path, object]]) -> None:
    """Write each (path, bytes or write(tmp) function) through a temporary file in its folder, then rename
    them all: a full disk leaves no temporary file and replaces nothing."""
    needed: dict[Path, int] = {}
    for path, data in items:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        if isinstance(data, bytes):
            needed[path.parent] = needed.get(path.parent, 0) + len(data)
    for folder, size in needed.items():
        free = shutil.disk_usage(folder).free
        if size > free:
            raise _no_room(folder, size, free)
    temps: list[tuple[str, Path]] = []
    current = items[0][0] if items else Path(".")
    try:
        for current, data in items:
            fd, tmp = tempfile.mkstemp(dir=current.parent, prefix=f".{current.name[:40]}.", suffix=current.suffix)
            temps.append((tmp, current))
            if isinstance(data, bytes):
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            else:
                os.close(fd)
                data(Path(tmp))
        from converters.frontends.atomic_output import default_file_mode

        for tmp, current in temps:
            os.chmod(tmp, default_file_mode())  # mkstemp makes 0600: respect the umask like any other output
            os.replace(tmp, current)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            total = sum(len(d) for _, d in items if isinstance(d, bytes)) or None
            try:
                free = shutil.disk_usage(current.parent).free
            except OSError:
                free = None
            raise _no_room(current.parent, total, free) from None
        raise UserError(f"cannot write {current}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save_atomic(path: Path, write) -> Path:
    """Write `write` (bytes, or a function that writes a given temporary path) through a temporary file
    in the same folder, then rename: never a half-written file. A full disk is one line (DiskFullError)
    naming the folder and the bytes needed, and leaves the old file as it was."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name to write")
    if _pending is not None:
        _pending.append((path, write))
    else:
        _write_files([(path, write)])
    return path


def png_bytes(rgb01: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    to_pil(rgb01).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(rgb01: torch.Tensor, path: str | Path) -> Path:
    return save_atomic(Path(path), png_bytes(rgb01))
