"""Fooling image: the smallest push that makes the model answer --target."""
from __future__ import annotations

import sys
from pathlib import Path

from inverter.cli.options import (LOOP_FIELDS, add_common, add_config_options, add_input_spec_options, add_output,
                                  config_from, PROG, check_index, emit, index, interrupted_exit, load_network,
                                  out_dir)


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--target", type=index, required=True, help="class the model should answer")
    p.add_argument("--node", help="logits node (default: the model's output)")
    add_output(p, "runs/fool_MODEL_TARGET")
    add_common(p)
    add_config_options(p, only=LOOP_FIELDS)
    add_input_spec_options(p)


def run(args) -> int:
    from inverter.io.images import load_image
    from inverter.io.reports import write_fooling
    from inverter.methods.fooling import fool

    out = out_dir(args, Path("runs") / f"fool_{args.model.stem}_{args.target}")
    network = load_network(args)
    check_index(network, args.node or network.output_names[0], (args.target,), "--target", flat=True)
    rgb = load_image(args.image, network.input_spec.size)
    config = config_from(args)
    if args.lr is None:
        config = config.replace(lr=0.01)
    config = config.replace(lambda_alpha=0.0, lambda_tv=0.0)
    result = fool(network, rgb, args.target, config, node=args.node, progress=not args.quiet)
    summary = write_fooling(result, out, f"{args.model.name}: target {args.target} after {result.iterations} iterations")
    emit(args, summary, f"class {result.before} -> {result.after} (target {args.target}) in "
                        f"{result.iterations} iterations, max pixel change {result.max_pixel_change:.4f} -> {out}")
    interrupted = interrupted_exit(result.stopped, out)
    if interrupted:
        return interrupted
    if result.after != args.target:
        print(f"{PROG}: the model still answers class {result.after} after {result.iterations} iterations "
              f"(target {args.target}); raise --iterations or --lr", file=sys.stderr)
        return 1
    return 0
