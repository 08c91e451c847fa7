"""Layer graphs of a Network: JSON, Graphviz DOT, SVG (through graphviz), Markdown,
and ONNX for Netron (the viewer this field uses) with our names written into each node's documentation.

Nodes carry their aliases, op, output shape and receptive field; inverted nodes are
highlighted. Shape computations (Shape, Gather, Constant ...) are left out unless asked for.
"""
from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path

from converters.errors import UserError, first_line
from converters.network.edges import producers
from converters.network.network import Network
from converters.network.safe_names import printable

FORMATS = ("json", "dot", "svg", "md", "onnx")  # html: the explorer's page (inverter.explorer.page)
BINARY = ("onnx",)


def graph_data(network: Network, highlight: list[str] | None = None, include_all: bool = False) -> dict:
    """{"nodes": [...], "edges": [...]} with edges from producer to consumer node."""
    marked = {network.resolve(n).name for n in (highlight or [])}
    kept = [n for n in network.nodes if include_all or n.on_data_path]
    index = {n.name: i for i, n in enumerate(kept)}
    producer = {t: n.name for t, (n, _) in producers(kept).items()}
    edges = []
    for n in kept:
        for t in n.inputs:
            if t in producer:
                edges.append({"from": index[producer[t]], "to": index[n.name], "tensor": t})
    nodes = [{"id": i, "name": n.name, "op": n.op_type, "shape": list(n.shape) if n.shape else None,
              "aliases": [a for a in n.aliases if a != n.module_name], "receptive_field": n.receptive_field,
              "highlight": n.name in marked} for i, n in enumerate(kept)]
    spec = network.input_spec
    return {"model": str(network.path) if network.path else None,
            "input": {"name": network.input_name, "layout": spec.layout, "size": list(spec.size)},
            "nodes": nodes, "edges": edges}


def _label(node: dict) -> str:
    shape = "x".join(str(d) for d in node["shape"][1:]) if node["shape"] else "?"
    short = node["aliases"][0] if node["aliases"] else node["name"]
    rf = "all" if node["receptive_field"] is None else node["receptive_field"]
    return f"{short}\n{node['op']} {shape}\nRF {rf}"


def dot_string(text: str) -> str:
    """`text` as the inside of a DOT quoted string: quotes and backslashes escaped, line breaks
    as DOT's `\\n`, control characters made visible (names are untrusted data)."""
    lines = [printable(line).replace("\\", "\\\\").replace('"', '\\"') for line in str(text).split("\n")]
    return "\\n".join(lines)


def to_dot(data: dict) -> str:
    source = f'{data["input"]["name"]}\n{data["input"]["layout"]} {data["input"]["size"][0]}x{data["input"]["size"][1]}'
    lines = ["digraph network {", '  rankdir=TB; node [shape=box, fontname="Helvetica", fontsize=10];',
             f'  input [label="{dot_string(source)}", shape=ellipse];']
    for n in data["nodes"]:
        style = ', style=filled, fillcolor="#ffd54f", penwidth=2' if n["highlight"] else ""
        lines.append(f'  n{n["id"]} [label="{dot_string(_label(n))}", tooltip="{dot_string(n["name"])}"{style}];')
    has_input = {e["to"] for e in data["edges"]}
    for n in data["nodes"]:
        if n["id"] not in has_input:
            lines.append(f"  input -> n{n['id']};")
    for e in data["edges"]:
        lines.append(f"  n{e['from']} -> n{e['to']};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(data: dict) -> str:
    dot = shutil.which("dot")
    if not dot:
        raise UserError("SVG needs Graphviz's `dot` program: install it (apt-get install graphviz) or use "
                        "--format md or json, which need no drawing program")
    done = subprocess.run([dot, "-Tsvg"], input=to_dot(data), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise UserError(f"graphviz failed: {first_line(done.stderr) or done.returncode}")
    return done.stdout


def _md(text: str) -> str:
    """A name inside a Markdown table cell: visible control characters, no cell or code breaks."""
    return printable(text).replace("|", "\\|").replace("`", "'")


def to_markdown(data: dict) -> str:
    """A node table and a Mermaid flowchart (rendered by GitHub and most Markdown viewers)."""
    lines = [f"# {Path(data['model']).name if data['model'] else 'network'}", "",
             "| node | op | shape | RF | aliases |", "|---|---|---|---|---|"]
    for n in data["nodes"]:
        mark = "**" if n["highlight"] else ""
        shape = "x".join(map(str, n["shape"])) if n["shape"] else "?"
        rf = "all" if n["receptive_field"] is None else n["receptive_field"]
        name, aliases = _md(n["name"]), _md(", ".join(n["aliases"]))
        lines.append(f"| {mark}`{name}`{mark} | {_md(n['op'])} | {shape} | {rf} | {aliases} |")
    lines += ["", "```mermaid", "flowchart TD"]
    for n in data["nodes"]:
        text = html.escape(printable(n["aliases"][0] if n["aliases"] else n["name"]))
        lines.append(f'  n{n["id"]}["{text}<br/>{html.escape(printable(n["op"]))}"]')
        if n["highlight"]:
            lines.append(f"  style n{n['id']} fill:#ffd54f,stroke:#333,stroke-width:2px")
    lines += [f"  n{e['from']} --> n{e['to']}" for e in data["edges"]]
    lines.append("```")
    return "\n".join(lines) + "\n"


def to_netron(network: Network, data: dict) -> bytes:
    """The model as loaded (shapes fixed at the chosen size), each node documented with its aliases,
    output shape and receptive field, and the highlighted nodes listed in the metadata: open it in
    Netron (`pip install netron; netron graph.onnx`) to see our names in its node panel."""
    import onnx

    model = onnx.ModelProto.FromString(network.onnx_model.SerializeToString())
    described = {n["name"]: n for n in data["nodes"]}
    for node in model.graph.node:
        info = described.get(node.name)
        if info is None:
            continue
        shape = "x".join(map(str, info["shape"])) if info["shape"] else "?"
        rf = "whole input" if info["receptive_field"] is None else f"{info['receptive_field']} px"
        lines = [f"invert-onnx names: {', '.join(info['aliases']) or '(none)'}", f"output shape: {shape}",
                 f"receptive field: {rf}"]
        node.doc_string = "\n".join(lines + ([node.doc_string] if node.doc_string else []))
    marked = [n["name"] for n in data["nodes"] if n["highlight"]]
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        "invert_onnx.highlight": json.dumps(marked)})
    return model.SerializeToString()


def export_graph(network: Network, fmt: str, highlight: list[str] | None = None,
                 include_all: bool = False) -> str | bytes:
    """The graph in `fmt` (FORMATS): text, or bytes for the formats in BINARY."""
    if fmt not in FORMATS:
        raise UserError(f"graph format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    data = graph_data(network, highlight, include_all)
    if fmt == "onnx":
        return to_netron(network, data)
    return {"json": lambda d: json.dumps(d, indent=2) + "\n", "dot": to_dot, "svg": to_svg,
            "md": to_markdown}[fmt](data)
