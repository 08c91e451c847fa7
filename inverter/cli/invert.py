"""Invert the features at one or more nodes of an ONNX model (the default command).

    invert-onnx MODEL.onnx --node conv3_1 --image face.jpg [--out DIR] [settings]
"""
from __future__ import annotations

import sys
from pathlib import Path

from inverter.cli.options import (PROG, add_common, add_config_options, add_input_spec_options, add_output,
                                  assumptions, config_from, emit, interrupted, load_network, out_dir, safe_stem,
                                  split_weights)


def add_arguments(p) -> None:
    p.add_argument("model", type=Path, help="an .onnx file")
    p.add_argument("--node", action="append", required=True,
                   help="node to invert: ONNX node or tensor name, module path, layer name or conv3_1 style; "
                        "NAME=WEIGHT weighs it; repeat for several")
    p.add_argument("--image", type=Path, action="append", required=True,
                   help="any image Pillow reads; repeat it to invert several images as one batch")
    add_output(p, "runs/MODEL_NODE")
    add_common(p)
    add_config_options(p)
    add_input_spec_options(p)


def run(args) -> int:
    from inverter.io.images import load_images
    from inverter.io.reports import write_result
    from inverter.methods.inversion import FLAT_BOUND, invert

    config = config_from(args)
    nodes, weights = split_weights(args.node)
    out = out_dir(args, Path("runs") / f"{args.model.stem}_{safe_stem(*nodes)}")
    network = load_network(args, notes=False)
    image = load_images(args.image, network.input_spec.size)  # several images: one batch, seeds seed, seed + 1, ...
    result = invert(network, image, nodes, config, weights=weights, progress=not args.quiet)
    files = write_result(result, out)
    summary = {**result.summary(), "files": {k: str(v) for k, v in files.items()}}
    lines = [f"note: {line}" for line in assumptions(network)] + shadowed_names(network, result)
    for b in range(result.image.shape[0]):
        errors = ", ".join(f"{k} {v[b]:.4f} ({result.flat_error[k][b]:.3f} of a flat image's)"
                           for k, v in result.feature_error.items())
        lines.append(f"{args.model.name}: feature error {errors}; PSNR {result.psnr[b]:.2f} dB, "
                     f"SSIM {result.ssim[b]:.3f}; {result.iterations} iterations in {result.seconds:.1f} s "
                     f"({result.stopped}) -> {out}"
                     + (" NO BETTER THAN A FLAT IMAGE" if result.no_better_than_flat[b] else ""))
    emit(args, summary, "\n".join(lines))
    if result.stopped == "diverged":
        print(f"{PROG}: the loss diverged after {result.iterations} iterations; the last finite image is saved "
              f"in {out}; {result.extra.get('cause') or 'lower --lr'}", file=sys.stderr)
        return 1
    if result.stopped == "stalled":
        print(f"{PROG}: the loss did not move in {result.iterations} iterations: the gradient vanishes at "
              f"{', '.join(nodes)} (a saturated activation?); the reconstruction is the start image. Try another node",
              file=sys.stderr)
    if result.stopped == "interrupted":
        print(f"{PROG}: {interrupted()}; the best image so far and its metrics are in {out}", file=sys.stderr)
        return 130
    if any(result.no_better_than_flat):
        worst = {k: max(v) for k, v in result.flat_error.items()}
        print(f"{PROG}: warning: no better than a flat image: the feature error at "
              f"{', '.join(f'{k} is {v:.2f}' for k, v in worst.items())} of a flat image's (>= {FLAT_BOUND:g}; "
              f"metrics.json: \"no_better_than_flat\"); the picture in {out} is not a reconstruction. Try "
              "--tv-depth-scale 1,1,1, more --iterations, an earlier node, or the model's own preprocessing",
              file=sys.stderr)
        # exit status stays 0 for now (short test runs of a few iterations are flat by design); the result
        # is marked "success": false in metrics.json and --json
    return 0


def shadowed_names(network, result) -> list[str]:
    """A name that is one node's and another node's output tensor (a Caffe layer whose blob its in-place ReLU
    rewrites) means the tensor, as canonical names do across frameworks: say which node was inverted, and how
    to ask for the other."""
    lines = []
    for typed, resolved in zip(result.nodes, result.resolved):
        other = next((n for n in network.nodes if n.name == typed and n.name != resolved), None)
        if other is not None and other.outputs:
            done = network.resolve(typed)
            lines.append(f"note: {typed!r} is the tensor {typed!r} after its in-place layers: inverted "
                         f"{done.op_type} {done.name!r}; the {other.op_type} layer {typed!r} alone is "
                         f"--node {other.outputs[0]!r}")
    return lines
