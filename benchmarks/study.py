"""A 16-run study three ways on this machine: Ray 2 workers x 1 thread, Ray 1 worker x 2 threads, and
today's sequential sweep (run_sweep, 2 threads). Runs per hour (wall clock, start-up included) and
the ratio; writes docs/studies/benchmark.md. Not a timed test.

    OMP_NUM_THREADS=1 python -m benchmarks.study [--size 128] [--iterations 40] [--out docs/studies/benchmark.md]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

NODES = ["conv1_2", "conv2_2", "conv3_1", "conv4_1"]
VALUES = [1e-4, 1e-3, 1e-2, 1e-1]


def main() -> int:
    from converters import load
    from inverter.config import InversionConfig
    from inverter.io.images import demo_image
    from inverter.studies.engine import Options, run_study
    from inverter.studies.spec import check, from_dict
    from inverter.studies.store import Store
    from inverter.studies.sweep import run_sweep
    from models import export

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("docs/studies/benchmark.md"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="study_bench_"))
    model = export("vgg16_bn_features", work / "vgg16_bn.onnx", seed=0, size=args.size)
    results = {}

    spec = {"name": "bench", "models": [str(model)], "nodes": NODES, "images": ["demo"], "batch": 4,
            "settings": {"iterations": args.iterations}, "grid": {"lambda_tv": VALUES}}
    for label, workers, threads in (("Ray, 2 workers x 1 thread", 2, 1), ("Ray, 1 worker x 2 threads", 1, 2)):
        study = from_dict({**spec, "store": str(work / f"{workers}x{threads}.sqlite")}, root=work)
        items = check(study)
        t = time.perf_counter()
        with Store(study.store_path) as store:
            summary = run_study(items, store, Options(workers=workers, threads=threads, progress=False), batch=4)
        results[label] = (summary["ok"], time.perf_counter() - t)
    torch.set_num_threads(2)
    t = time.perf_counter()
    net = load(model, channels_last=True, fold_batchnorm=True, inplace_relu=True)
    sweep = run_sweep(net, demo_image(), "lambda_tv", work / "sweep", InversionConfig(iterations=args.iterations),
                      nodes=NODES, values=VALUES, progress=False)
    results["sequential sweep (run_sweep), 1 process x 2 threads"] = (len(sweep["runs"]), time.perf_counter() - t)

    base = results["sequential sweep (run_sweep), 1 process x 2 threads"]
    lines = ["# Study engine benchmark", "",
             f"`OMP_NUM_THREADS=1 python -m benchmarks.study --size {args.size} --iterations {args.iterations}` on "
             f"{platform.node()} ({torch.get_num_threads()} torch threads max, {__import__('os').cpu_count()} cores, "
             "a machine shared with other jobs). 16 runs: seeded VGG16-BN, Grace Hopper, "
             f"{args.size} px, Adam, {args.iterations} iterations, λ_TV {VALUES} × {NODES}, batches of 4. "
             "Wall clock including Ray start-up and model loading.", "",
             "| how | runs | seconds | runs/hour | vs sequential |", "|---|---|---|---|---|"]
    for label, (runs, seconds) in results.items():
        lines.append(f"| {label} | {runs} | {seconds:.1f} | {runs / seconds * 3600:.0f} | "
                     f"{(runs / seconds) / (base[0] / base[1]):.2f}× |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
