"""Export the layer graph (json, dot, svg, html, md, onnx for Netron): nodes with aliases, shapes, receptive fields.

--format html writes the explorer's page (`invert-onnx serve`) as one file with no server: the graph
laid out by Graphviz, coloured by op, with hover and search."""
from __future__ import annotations

import sys
from pathlib import Path

from converters.errors import UserError
from converters.network.graph_export import BINARY, FORMATS
from inverter.cli.options import add_common, add_input_spec_options, load_network


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--format", choices=(*FORMATS, "html"), default="html")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.add_argument("--node", action="append", help="node(s) to highlight")
    p.add_argument("--all", action="store_true", help="also shape computations")
    p.add_argument("--runs", type=Path, metavar="CACHE",
                   help="with --format html: include this model's finished runs from an explorer cache folder "
                        "(`serve --cache`), shown when a node is clicked")
    add_common(p)
    add_input_spec_options(p)


def run(args) -> int:
    from converters.network.graph_export import export_graph
    from inverter.io.images import save_atomic

    if args.runs is not None and (args.format != "html" or not args.runs.is_dir()):
        raise UserError("--runs takes an explorer cache folder (`serve --cache`) and goes with --format html")
    if args.format in BINARY and not args.output:
        raise UserError(f"--format {args.format} writes a binary file: give -o FILE.{args.format}")
    network = load_network(args)
    if args.format == "html":
        from inverter.explorer.page import static_page

        content = static_page(network, highlight=args.node, include_all=args.all, runs_from=args.runs)
    else:
        content = export_graph(network, args.format, highlight=args.node, include_all=args.all)
    if args.output:
        save_atomic(args.output, lambda tmp: tmp.write_bytes(content) if isinstance(content, bytes)
                    else tmp.write_text(content))
        print(f"{args.format} graph of {len(network.nodes)} nodes -> {args.output}")
    else:
        sys.stdout.write(content)
    return 0
