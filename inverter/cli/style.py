"""Style transfer: Gram loss over --style-node(s) + content at --content-node + TV (Gatys et al. 2016)."""
from __future__ import annotations

from pathlib import Path

from inverter.cli.options import (
    LOOP_FIELDS,
    add_common,
    add_config_options,
    add_input_spec_options,
    add_output,
    config_from,
    emit,
    finite_float,
    interrupted_exit,
    load_network,
    out_dir,
)
from inverter.presets import STYLE_DEFAULTS, STYLE_WEIGHT


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--content", type=Path, required=True)
    p.add_argument("--style", type=Path, required=True)
    p.add_argument("--style-node", action="append", required=True)
    p.add_argument("--content-node")
    p.add_argument("--style-weight", type=finite_float, default=STYLE_WEIGHT,
                   help=f"weight of the Gram terms against the content term (default: {STYLE_WEIGHT})")
    p.add_argument("--content-weight", type=finite_float, default=1.0)
    add_output(p, "runs/style_MODEL")
    add_common(p)
    add_config_options(p, only=LOOP_FIELDS + ("lambda_tv",), defaults=STYLE_DEFAULTS)
    add_input_spec_options(p)


def run(args) -> int:
    from inverter.io.images import load_image
    from inverter.io.reports import write_style
    from inverter.methods.style import style_transfer

    out = out_dir(args, Path("runs") / f"style_{args.model.stem}")
    network = load_network(args)
    size = network.input_spec.size
    content, style = load_image(args.content, size), load_image(args.style, size)
    config = config_from(args)
    pixels, run_ = style_transfer(network, content, style, args.style_node, args.content_node, config,
                                  style_weight=args.style_weight, content_weight=args.content_weight,
                                  progress=not args.quiet)
    summary = write_style(content, style, pixels, run_, out,
                          f"style {', '.join(args.style_node)}; content {args.content_node}", config)
    emit(args, summary, f"style transfer: {run_.iterations} iterations in {run_.seconds:.1f} s -> {out}")
    return interrupted_exit(run_.stopped, out) or 0
