"""Invert the same node, image and settings on several models: one grid and one table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from inverter.cli.options import (add_common, add_config_options, add_input_spec_options, add_output, config_from,
                                  interrupted_exit, load_network, out_dir, safe_stem)


def add_arguments(p) -> None:
    p.add_argument("models", type=Path, nargs="+", help="two or more .onnx files")
    p.add_argument("--node", action="append", required=True)
    p.add_argument("--image", type=Path, required=True)
    add_output(p, "runs/compare_NODE")
    add_common(p)
    add_config_options(p)
    add_input_spec_options(p)


def run(args) -> int:
    from inverter.studies.compare import compare, markdown_table, write_comparison

    config = config_from(args)
    out = out_dir(args, Path("runs") / f"compare_{safe_stem(*args.node)}")
    labels = [str(m) for m in args.models]
    if len({Path(m).name for m in labels}) == len(labels):
        labels = [Path(m).name for m in labels]
    models = {label: load_network(args, path) for label, path in zip(labels, args.models)}
    results = compare(models, args.image, args.node, config, progress=not args.quiet)
    files = write_comparison(models, results, out, title=f"{', '.join(args.node)}: {config.optimizer}, "
                             f"{config.iterations} it, seed {config.seed}")
    if args.json:
        print(files["json"].read_text())
    else:
        print(markdown_table(json.loads(files["json"].read_text())["rows"]), end="")
        print(f"grid: {files['grid']}")
    flat = [label for label, r in results.items() if any(r.no_better_than_flat)]
    if flat:
        print(f"invert-onnx: warning: no better than a flat image at {', '.join(args.node)}: {', '.join(flat)} "
              "(marked in the table)", file=sys.stderr)
    stopped = "interrupted" if any(r.stopped == "interrupted" for r in results.values()) else "done"
    return interrupted_exit(stopped, out) or 0
