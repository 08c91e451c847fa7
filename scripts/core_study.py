"""The core acceptance study on real weights: VGG16 (HED's convolutions), Grace Hopper, 224 px,
run as a layer sweep (the same study as `invert-onnx demo`, with two checks).

- inverting relu1_2 gives PSNR >= 20 dB against the original;
- the normalised feature error at the conv3_1 block output falls below 0.1 in <= 200 Adam iterations.

    python scripts/core_study.py [--out runs/core_study] [--iterations 200]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from converters import load
from inverter import InversionConfig
from inverter.io.images import demo_image
from inverter.io.reports import write_json
from inverter.studies.sweep import run_sweep
from models import export


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/core_study"))
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    shutil.rmtree(args.out / "runs", ignore_errors=True)  # a study is measured afresh, never resumed
    args.out.mkdir(parents=True, exist_ok=True)
    network = load(export("vgg16_hed", args.out / "vgg16_hed.onnx"))
    config = InversionConfig(iterations=args.iterations)
    summary = run_sweep(network, demo_image(), "layer", args.out, config, nodes=["relu1_2", "conv3_1"],
                        progress=False, title=f"VGG16 (HED weights), Adam, {args.iterations} it")
    rows = {r["node"]: r for r in json.loads((args.out / "sweep.json").read_text())["runs"]}
    curves = {r["node"]: r["loss_curve"] for r in
              (json.loads(p.read_text()) for p in (args.out / "runs").glob("*.json"))}
    below = next((i + 1 for i, v in enumerate(curves["conv3_1"]) if v < 0.1), None)
    checks = {"relu1_2 PSNR >= 20 dB": rows["relu1_2"]["psnr_db"] >= 20,
              "conv3_1 feature error < 0.1 within 200 iterations": (below or 10**9) <= 200}
    write_json({"config": config.to_dict(), "results": rows, "first_iteration_below_0.1": below,
                "checks": checks, "figure": summary["figure"]}, args.out / "core_study.json")
    print(json.dumps({"results": rows, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
