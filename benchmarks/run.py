"""Speed of the inversion step: converted graph vs native torch vs onnxruntime, and the speed options.

    python -m benchmarks.run                      # VGG16-BN conv3_1, AlexNet conv3 (relu), ResNet-50 layer2.1, 224 px
    python -m benchmarks.run --quick              # small sizes, short measurements: about a minute
    python -m benchmarks.run --model resnet50 --node layer3 --size 224 --batch 8
    python -m benchmarks.run --model my.onnx --node conv3_1 --no-native

Prints torch.utils.benchmark's table and the ratios, and writes the report as JSON (--json).
What is measured: `benchmarks.speed` (its docstring).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from benchmarks.speed import bench_model, table
from inverter.cli.options import positive_float, positive_int

# AlexNet's conv3 block output is features.7 (Conv features.6 + ReLU features.7).
DEFAULT_MODELS = [("vgg16_bn", "conv3_1", None), ("alexnet", "features.7", None), ("resnet50", "layer2.1", None)]
# Quick: VGG16-BN's convolutional part at 64 px (the full VGG needs >= 224 px for its 7x7 pooling),
# AlexNet at 224 (its 6x6 pooling needs it; the cut is cheap), ResNet-50 at 64 px.
QUICK_MODELS = [("vgg16_bn_features", "conv3_1", 64), ("alexnet", "features.7", 224), ("resnet50", "layer2.1", 64)]


def main(argv: list[str] | None = None) -> int:
    from inverter.cli.options import nonnegative_int, positive_int  # refused when parsed, as the CLI does

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="architecture name or ONNX file (repeatable, with --node)")
    parser.add_argument("--node", action="append", help="node to cut at, one per --model")
    parser.add_argument("--size", type=positive_int, help="input side (default: the model's own)")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per step")
    parser.add_argument("--min-run-time", type=positive_float, default=None,
                        help="seconds per variant (blocked_autorange; default 2, --quick 0.3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--no-onnxruntime", action="store_true")
    parser.add_argument("--no-fast", action="store_true", help="skip the speed options")
    parser.add_argument("--quick", action="store_true", help="small sizes, short measurements")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/models"), help="exported ONNX files are cached here")
    parser.add_argument("--json", type=Path, default=Path("runs/bench/bench.json"))
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")

    if args.model:
        if len(args.node or []) != len(args.model):
            parser.error("give one --node per --model")
        models = [(m, n, args.size) for m, n in zip(args.model, args.node)]
    else:
        models = QUICK_MODELS if args.quick else DEFAULT_MODELS
    min_run_time = args.min_run_time or (0.3 if args.quick else 2.0)
    args.workdir.mkdir(parents=True, exist_ok=True)
    reports, measurements = [], []
    for model, node, size in models:
        result = bench_model(model, node, size=size or args.size, batch=args.batch, seed=args.seed,
                             min_run_time=min_run_time, native=not args.no_native, fast=not args.no_fast,
                             onnxruntime=not args.no_onnxruntime, workdir=args.workdir)
        reports.append(result["report"])
        measurements.extend(result["measurements"])
    print(table(measurements))
    for report in reports:
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in report["ratios"].items())
        print(f"{report['model']} @ {report['node']}: {ratios}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(reports, indent=1))
    print(f"\nreport: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
