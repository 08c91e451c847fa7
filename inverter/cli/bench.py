"""Time one optimisation step (forward to the node + gradient to the image) with and without the speed options.

The full harness (native torch, onnxruntime, GEMM rate, batches) is `python -m benchmarks.run`
in the source tree.
"""
from __future__ import annotations

from pathlib import Path

from inverter.cli.options import add_common, add_input_spec_options, emit, load_network, positive_float, positive_int


def add_arguments(p) -> None:
    p.add_argument("model", type=Path, help="an .onnx file")
    p.add_argument("--node", required=True)
    p.add_argument("--batch", type=positive_int, default=1, help="images per step")
    p.add_argument("--seconds", type=positive_float, default=2.0, help="measuring time per variant")
    add_common(p)
    add_input_spec_options(p)


def run(args) -> int:
    rows = {}
    load_network(args, notes=False).resolve(args.node)  # an unknown node fails before any timing
    from inverter.step_timer import time_step

    for label, speedups in (("plain", False), ("speed options", True)):
        args.no_speedups = not speedups
        network = load_network(args)
        rows[label] = time_step(network, args.node, batch=args.batch, seconds=args.seconds)
    summary = {"model": str(args.model), "node": args.node, "batch": args.batch,
               "ms_per_step": {k: round(v * 1e3, 3) for k, v in rows.items()}}
    emit(args, summary, f"{args.model.name} @ {args.node}, batch {args.batch}: " + ", ".join(
        f"{k} {v * 1e3:.1f} ms/step" for k, v in rows.items()))
    return 0
