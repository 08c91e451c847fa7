"""The core issue's acceptance study on real weights: VGG16 (HED's convolutions), Grace Hopper, 224 px.

- inverting relu1_2 gives PSNR >= 20 dB against the original;
- the normalised feature error at the conv3_1 block output falls below 0.1 in <= 200 Adam iterations.

    python scripts/core_study.py [--out runs/core_study] [--iterations 200]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from converters import load
from inverter import InversionConfig, invert
from inverter.io.images import demo_image
from inverter.io.reports import grid, write_json
from models import export


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/core_study"))
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    network = load(export("vgg16_hed", args.out / "vgg16_hed.onnx"))
    config = InversionConfig(iterations=args.iterations)
    rows, images, labels = {}, [], []
    for node in ["relu1_2", "conv3_1"]:
        result = invert(network, demo_image(), node, config, progress=False)
        curve = result.history[f"feature:{node}"][:, 0]
        below = next((i + 1 for i, v in enumerate(curve) if v < 0.1), None)
        rows[node] = {"psnr_db": result.psnr[0], "ssim": result.ssim[0],
                      "feature_error": result.feature_error[node][0],
                      "first_iteration_below_0.1": below, "seconds": result.seconds}
        if not images:
            images.append(result.original[0])
            labels.append("original")
        images.append(result.image[0])
        labels.append(f"{node}: err {rows[node]['feature_error']:.3f}, PSNR {result.psnr[0]:.1f} dB")
    checks = {"relu1_2 PSNR >= 20 dB": rows["relu1_2"]["psnr_db"] >= 20,
              "conv3_1 feature error < 0.1 within 200 iterations":
                  (rows["conv3_1"]["first_iteration_below_0.1"] or 10**9) <= 200}
    write_json({"config": config.to_dict(), "results": rows, "checks": checks}, args.out / "core_study.json")
    grid(images, labels, args.out / "core_study.png", title=f"VGG16 (HED weights), Adam, {args.iterations} it")
    print(json.dumps({"results": rows, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
