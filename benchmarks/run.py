"""Speed of the inversion step against native PyTorch, onnxruntime and the GEMM rate.

    python -m benchmarks.run                      # VGG16-BN conv3_1, AlexNet conv3 (relu), ResNet-50 layer2.1, 224 px
    python -m benchmarks.run --quick              # small sizes, few repeats: under a minute
    python -m benchmarks.run --model resnet50 --node layer3 --size 224 --batches 1 8
    python -m benchmarks.run --model my.onnx --node conv3_1 --no-native

Prints Markdown tables on stdout and writes the whole report as JSON (--json). The measuring
and its conventions live in `benchmarks.speed` (see its docstring).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from benchmarks.speed import format_table, run_bench

# AlexNet's conv3 block output is features.7 (Conv features.6 + ReLU features.7).
DEFAULT_MODELS = [("vgg16_bn", "conv3_1"), ("alexnet", "features.7"), ("resnet50", "layer2.1")]
# Quick: VGG16-BN's convolutional part at 64 px (the full VGG needs >= 224 px for its 7x7 pooling),
# AlexNet at 224 (its 6x6 pooling needs it; the cut is cheap), ResNet-50 at 64 px.
QUICK_MODELS = [("vgg16_bn_features", "conv3_1", 64), ("alexnet", "features.7", 224), ("resnet50", "layer2.1", 64)]


def main(argv: list[str] | None = None) -> int:
    from inverter.cli.options import nonnegative_int, positive_int  # refused when parsed, as the CLI does

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="architecture name or ONNX file (repeatable, with --node)")
    parser.add_argument("--node", action="append", help="node to cut at, one per --model")
    parser.add_argument("--size", type=positive_int, nargs="+", help="input sides (default: the model's own, 224)")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=None, help="batch sizes (default 1 2 4 8)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed rounds per variant (default 15)")
    parser.add_argument("--warmup", type=nonnegative_int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--no-onnxruntime", action="store_true")
    parser.add_argument("--no-full", action="store_true")
    parser.add_argument("--no-fast", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc: keep freed memory for reuse instead of page-faulting it back (inverter.cli.memory)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the cut (slow to build)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 batches, 3 repeats: < 1 minute")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/models"),
                        help="exported ONNX files are cached here")
    parser.add_argument("--json", type=Path, default=Path("runs/bench/bench.json"))
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")

    if args.model:
        nodes = args.node or []
        if len(nodes) != len(args.model):
            parser.error("give one --node per --model")
        models = list(zip(args.model, nodes))
    else:
        models = QUICK_MODELS if args.quick else DEFAULT_MODELS
    quick = args.quick
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = run_bench(
        models, sizes=args.size, batches=args.batches or ((1, 2) if quick else (1, 2, 4, 8)),
        repeats=args.repeats or (3 if quick else 15), warmup=1 if quick else args.warmup, seed=args.seed,
        native=not args.no_native, onnxruntime=not args.no_onnxruntime, full=not args.no_full,
        fast=not args.no_fast, memory=not args.no_memory, compile=args.compile,
        gemm_n=1024 if quick else 2048, gemm_repeats=3 if quick else 8, threads=args.threads,
        keep_freed_memory=args.keep_freed_memory, workdir=args.workdir)
    print(format_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nreport: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
