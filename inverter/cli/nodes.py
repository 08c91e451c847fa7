"""List every addressable node: name, op, shape, receptive field, aliases."""
from __future__ import annotations

import json
from pathlib import Path

from converters.network.safe_names import printable
from inverter.cli.options import add_common, add_input_spec_options, load_network


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--op", action="append", help="only nodes of this op type (repeatable)")
    p.add_argument("--all", action="store_true", help="also list shape computations (Shape, Gather, Constant ...)")
    add_common(p)
    add_input_spec_options(p)


def run(args) -> int:
    network = load_network(args)
    rows = [n.describe() for n in network.nodes if args.all or args.op or n.on_data_path]
    if args.op:
        rows = [r for r in rows if r["op"] in args.op]
    if args.json:
        print(json.dumps({"model": network.describe(), "nodes": rows}, indent=2))
        return 0
    spec = network.input_spec
    print(f"{printable(args.model)}: {len(network.nodes)} nodes ({len(rows)} listed); input {printable(network.input_name)} {spec.layout} "
          f"{spec.size[0]}x{spec.size[1]} {spec.colour} [0, {spec.scale:g}] ({spec.source})")
    print(f"{'node':<48} {'op':<20} {'shape':<20} {'RF':>5}  aliases")
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"]) if r["shape"] else "?"
        rf = "all" if r["receptive_field"] is None else str(r["receptive_field"])
        aliases = ", ".join(printable(a) for a in r["aliases"])
        print(f"{printable(r['name']):<48} {printable(r['op']):<20} {shape:<20} {rf:>5}  {aliases}")
    return 0
