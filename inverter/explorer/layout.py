"""The layer graph laid out by Graphviz's `dot` (a layered drawing, edges as splines), in pixels.

Only generated ids reach `dot`: node names are untrusted data, so the browser draws them as text
from the page's own data, never through a layout program or markup.
"""
from __future__ import annotations

import json
import shutil
import subprocess

from converters.errors import UserError, first_line

NODE_W, NODE_H = 1.9, 0.56  # inches (dot's unit); 72 points each, drawn 1:1 as pixels
INPUT = "input"


class LayoutError(UserError):
    """Graphviz is missing or refused the graph."""


def dot_source(data: dict) -> str:
    """The graph with ids only: fixed-size boxes, so the layout does not depend on the names."""
    lines = ["digraph g {", "  rankdir=TB; nodesep=0.22; ranksep=0.32;",
             f'  node [shape=box, fixedsize=true, width={NODE_W}, height={NODE_H}, label=""];',
             f'  {INPUT} [shape=ellipse, width=1.3, height=0.42];']
    has_input = {e["to"] for e in data["edges"]}
    lines += [f"  n{n['id']};" for n in data["nodes"]]
    lines += [f"  {INPUT} -> n{n['id']};" for n in data["nodes"] if n["id"] not in has_input]
    lines += [f"  n{e['from']} -> n{e['to']};" for e in data["edges"]]
    return "\n".join(lines + ["}"]) + "\n"


def _points(text: str, flip) -> tuple[list[list[float]], list[float] | None]:
    """dot's edge `pos` ("e,x,y x,y x,y ..."): the spline's control points and the arrow's tip."""
    points, end = [], None
    for part in text.split():
        if part.startswith("e,"):
            end = flip(*map(float, part[2:].split(",")))
        elif not part.startswith("s,"):
            points.append(flip(*map(float, part.split(","))))
    return points, end


def layout(data: dict) -> dict:
    """{"width", "height", "nodes": {id: [cx, cy, w, h]}, "input": [cx, cy, w, h],
    "edges": [{"from", "to", "points", "end"}]} with y growing downwards (id "input" is the graph input)."""
    dot = shutil.which("dot")
    if not dot:
        raise LayoutError("the explorer lays the graph out with Graphviz's `dot`: install Graphviz "
                          "(apt-get install graphviz, brew install graphviz)")
    try:
        done = subprocess.run([dot, "-Tjson0"], input=dot_source(data), capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise LayoutError("graphviz took over 5 minutes to lay the graph out") from None
    if done.returncode != 0:
        raise LayoutError(f"graphviz failed: {first_line(done.stderr) or done.returncode}")
    out = json.loads(done.stdout)
    height = float(out["bb"].split(",")[3])

    def flip(x: float, y: float) -> list[float]:
        return [round(x, 1), round(height - y, 1)]

    boxes, names = {}, {}
    for obj in out.get("objects", []):
        x, y = map(float, obj["pos"].split(","))
        box = [*flip(x, y), round(float(obj["width"]) * 72, 1), round(float(obj["height"]) * 72, 1)]
        names[obj["_gvid"]] = obj["name"]
        boxes[obj["name"]] = box
    edges = []
    for e in out.get("edges", []):
        points, end = _points(e["pos"], flip)
        tail, head = names[e["tail"]], names[e["head"]]
        edges.append({"from": INPUT if tail == INPUT else int(tail[1:]), "to": int(head[1:]),
                      "points": points, "end": end})
    return {"width": round(float(out["bb"].split(",")[2]), 1), "height": round(height, 1),
            "nodes": {int(k[1:]): v for k, v in boxes.items() if k != INPUT}, "input": boxes[INPUT],
            "edges": edges}
