"""Model files are written whole or not at all: through a temporary file in the same folder, then
renamed over the target (`os.replace` is atomic on one file system). A failed export or check
leaves the previous file untouched; an output that names one of the sources is refused."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

import onnx

from converters.errors import ConversionError


def check_output(out_path: str | Path, sources=()) -> Path:
    """`out_path` as a file to write: not a folder, not one of `sources` (the model being read)."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ConversionError(f"-o {out_path} is a folder; give the .onnx file to write")
    for source in sources:
        if source is not None and isinstance(source, (str, Path)) and Path(source).exists():
            if out_path.exists() and os.path.samefile(source, out_path) or Path(source).resolve() == out_path.resolve():
                raise ConversionError(f"-o {out_path} is the model being converted; write to another file")
    if out_path.parent.exists() and not out_path.parent.is_dir():
        raise ConversionError(f"-o {out_path}: {out_path.parent} is not a folder")
    return out_path


def default_file_mode() -> int:
    """The mode a plain `open(path, "w")` would give (0o666 less the umask): mkstemp's files are 0600 whatever the
    umask, so an atomically written file is set to this before it is renamed into place."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_output(out_path: str | Path, sources=(), needed: int | None = None):
    """Yield a temporary path next to `out_path`; on success it replaces `out_path`, on any error it is removed.
    needed: the bytes it will hold, when known (checked against the free space first, and said if the disk fills)."""
    out_path = check_output(out_path, sources)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=".partial.onnx")
    except OSError as exc:
        raise ConversionError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        if needed is not None and needed > shutil.disk_usage(out_path.parent).free:
            raise OSError(errno.ENOSPC, "not enough room")
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, out_path)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        free = shutil.disk_usage(out_path.parent).free
        size = f"needs {needed} bytes, {free} free" if needed is not None else f"{free} bytes free"
        raise ConversionError(f"no space left in {out_path.parent} for the model (it {size}); free some "
                              "space or write elsewhere (an existing file is untouched)") from None
    finally:
        tmp.unlink(missing_ok=True)


def save_onnx(model: onnx.ModelProto, out_path: str | Path) -> Path:
    """onnx.save, atomically."""
    out_path = Path(out_path)
    with atomic_output(out_path, needed=model.ByteSize()) as tmp:
        onnx.save(model, str(tmp))
    return out_path
