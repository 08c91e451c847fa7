"""Saliency map: |d score / d pixel|, max over colour channels (Simonyan et al. 2014)."""
from __future__ import annotations

from pathlib import Path

from inverter.cli.options import (add_common, add_input_spec_options, add_output, check_index, emit, index,
                                  load_network, out_dir)


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--class", dest="cls", type=index, help="class index (default: top-1)")
    p.add_argument("--node", help="score node (default: the model's output)")
    add_output(p, "runs/saliency_MODEL")
    add_common(p)
    add_input_spec_options(p)


def run(args) -> int:
    from inverter.io.images import load_image
    from inverter.io.reports import write_saliency
    from inverter.methods.saliency import saliency

    network = load_network(args)
    if args.cls is not None:
        check_index(network, args.node or network.output_names[0], (args.cls,), "--class", flat=True)
    rgb = load_image(args.image, network.input_spec.size)
    out = out_dir(args, Path("runs") / f"saliency_{args.model.stem}")
    maps, index = saliency(network, rgb, args.cls, node=args.node)
    summary = write_saliency(rgb, maps, index, out)
    emit(args, summary, f"saliency of class {index} -> {summary['figure']}")
    return 0
