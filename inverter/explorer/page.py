"""The explorer's one page: the same HTML, CSS and script for the server and the static export.

The page's data (graphs with their layout, photos, presets) travels inside the page as JSON; the
names in it are untrusted and the script only ever sets them as text.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from converters.network.graph_export import graph_data
from converters.network.network import Network
from inverter.explorer.layout import layout


def _static(name: str) -> str:
    return resources.files("inverter.explorer").joinpath("static", name).read_text(encoding="utf-8")


def model_view(model_id: str, network: Network, name: str | None = None, highlight: list[str] | None = None,
               include_all: bool = False) -> dict:
    """The graph of one model (graph_data: nodes, edges, input) with dot's layout, and how to call it."""
    data = graph_data(network, highlight, include_all)
    data["layout"] = layout(data)
    data["id"] = model_id
    data["name"] = name or (Path(data["model"]).name if data["model"] else "network")
    data.pop("model")  # no local paths in a page
    return data


def presets() -> list[dict]:
    from inverter.presets import PRESETS

    return [{"name": k, "label": label, "iterations": c.iterations, "lambda_tv": c.lambda_tv,
             "lambda_alpha": c.lambda_alpha, "seed": c.seed} for k, (c, label) in PRESETS.items()]


def render(boot: dict, title: str = "invert-onnx explorer") -> str:
    """The page with its data: JSON inside a script tag, with `<` escaped so no name can end the tag."""
    import html
    import re

    payload = json.dumps(boot, separators=(",", ":")).replace("<", "\\u003c").replace("&", "\\u0026")
    parts = {"TITLE": html.escape(title), "CSS": _static("explorer.css"), "JS": _static("explorer.js"), "BOOT": payload}
    return re.sub(r"\{\{(TITLE|CSS|JS|BOOT)\}\}", lambda m: parts[m.group(1)], _static("explorer.html"))


def cached_runs(network: Network, cache: Path) -> list[dict]:
    """The finished runs of this model file in an explorer cache folder (`serve --cache`), images inlined."""
    import base64

    from inverter.explorer.runs import file_digest

    if network.path is None:
        return []
    digest, runs = file_digest(Path(network.path)), []
    for stored in sorted(Path(cache).glob("*/result.json")):
        try:
            record = json.loads(stored.read_text())
            if record.get("model_digest") != digest:
                continue
            images = {k: "data:image/png;base64," + base64.b64encode((stored.parent / f"{k}.png").read_bytes()).decode()
                      for k in ("original", "reconstruction")}
        except (OSError, ValueError):
            continue
        runs.append({**record["view"], "model": "m0", "images": images})
    return runs


def static_page(network: Network, highlight: list[str] | None = None, include_all: bool = False,
                runs_from: Path | None = None) -> str:
    """`graph --format html`: the explorer's graph, hover and search in one file, no server, nothing fetched;
    with runs_from (an explorer cache folder), the reconstructions already made, shown on click."""
    view = model_view("m0", network, highlight=highlight, include_all=include_all)
    runs = cached_runs(network, runs_from) if runs_from else []
    return render({"mode": "static", "models": [view], "photos": [], "presets": presets(), "runs": runs},
                  title=f"{view['name']}: layer graph")
