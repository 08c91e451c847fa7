"""Sweep lambda_alpha, lambda_tv, the learning rate or the layer: one labelled figure plus JSON/CSV; resumable."""
from __future__ import annotations

import sys
from pathlib import Path

from inverter.cli.options import (add_common, add_config_options, add_input_spec_options, add_output, config_from,
                                  emit, float_list, load_network)
from inverter.studies.sweep import SWEEP_KINDS


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--kind", choices=SWEEP_KINDS, required=True)
    p.add_argument("--node", action="append",
                   help="nodes (default: first five conv blocks; all layers for --kind layer)")
    p.add_argument("--values", type=float_list, help="comma-separated values (default: 1e-7..1e-3 for lambdas, 0.01..0.3 for lr)")
    add_output(p, "runs/sweep_MODEL_KIND")
    add_common(p)
    add_config_options(p)
    add_input_spec_options(p)


def run(args) -> int:
    from converters.errors import UserError
    from inverter.presets import preset
    from inverter.studies.sweep import run_sweep

    from inverter.studies.sweep import SWEEP_MARKER

    out = Path(args.out or Path("runs") / f"sweep_{args.model.stem}_{args.kind}")
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a folder; choose another --out")
    resumable = (out / "runs" / SWEEP_MARKER).is_file()  # a sweep's own folder (a user's runs/ is not)
    if out.is_dir() and any(out.iterdir()) and not resumable and not args.force:
        raise UserError(f"output folder {out} holds files that are not a sweep's; choose another --out or --force")
    network = load_network(args)
    config = config_from(args)
    label = preset(args.preset)[1] if args.preset else "invert-onnx defaults"
    values = args.values
    summary = run_sweep(network, args.image, args.kind, out, config, nodes=args.node, values=values,
                        preset_label=label, progress=not args.quiet)
    emit(args, summary, f"{args.kind} sweep: {len(summary['runs'])} runs -> {summary['figure']}")
    from inverter.studies.sweep import flat_runs

    if flat_runs(summary["runs"]):
        print(f"invert-onnx: {flat_runs(summary['runs'])}", file=sys.stderr)
    return 0
