"""How far apart the PyTorch, Caffe and Keras exports of one VGG16-BN invert: the spread that
tests/inverter/test_compare.py::test_reconstructions_agree_across_frameworks bounds.

    OMP_NUM_THREADS=1 python -m benchmarks.cross_framework --seeds 7 8
    OMP_NUM_THREADS=2 python -m benchmarks.cross_framework --seeds 7 8

One line per (seed, framework): the feature error and its ratio to the PyTorch export's, SSIM to
the photo and its difference from PyTorch's, and SSIM between this reconstruction and PyTorch's.
The default run (Adam, float32) parts the trajectories within a few iterations, so these numbers
are the chaotic spread a user sees across exports, machines and thread counts, not rounding.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8])
    parser.add_argument("--node", default="conv3_1")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)

    import matplotlib

    from converters import load
    from inverter import InversionConfig
    from inverter.io.metrics import ssim
    from inverter.studies.compare import compare
    from models.twins.three_frameworks import tensorflow_available, vgg16_bn_three_frameworks

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    frameworks = ("pytorch", "caffe", "keras") if tensorflow_available() else ("pytorch", "caffe")
    with tempfile.TemporaryDirectory() as folder:
        paths = vgg16_bn_three_frameworks(Path(folder), seed=3, size=args.size, frameworks=frameworks)
        three = {k: load(p) for k, p in paths.items()}
        print(f"threads {torch.get_num_threads()}, node {args.node}, {args.size} px")
        for seed in args.seeds:
            results = compare(three, photo, [args.node], InversionConfig(seed=seed), progress=False)
            ref = results["pytorch"]
            ref_error = ref.feature_error[args.node][0]
            for framework, r in results.items():
                error = r.feature_error[args.node][0]
                print(f"seed {seed} {framework:8s} feature error {error:.4f} (x{error / ref_error:.3f}) "
                      f"SSIM to photo {r.ssim[0]:.3f} (diff {abs(r.ssim[0] - ref.ssim[0]):.4f}) "
                      f"SSIM to pytorch's {ssim(r.image, ref.image):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
