"""Tables (Markdown, CSV) and figure grids of a study, made from its store alone."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from inverter.io.images import save_atomic
from inverter.io.reports import grid
from inverter.studies.store import Store

SHOWN = ("status", "feature_error", "rel_flat", "psnr", "ssim", "seconds")


def varying(rows: list[dict]) -> list[str]:
    """The settings (and preset) that differ between rows: the axes of the study's grid."""
    names = ["preset"] + [k for k in (rows[0] if rows else {}) if k.startswith("cfg_") and k != "cfg_device"]
    return [k for k in names if len({r[k] for r in rows}) > 1]


def _label(name: str) -> str:
    return name.removeprefix("cfg_")


def _value(row: dict, name: str) -> str:
    value = row[name]
    try:
        value = json.loads(value) if name.startswith("cfg_") else value
    except (TypeError, ValueError):
        pass
    return f"{value:g}" if isinstance(value, float) else str(value)


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown(rows: list[dict], title: str) -> str:
    axes = varying(rows)
    head = ["model", "node", "image", *(_label(a) for a in axes), "status", "feature error", "rel. to flat",
            "PSNR (dB)", "SSIM", "s/run"]
    lines = [f"# {title}", "", f"{len(rows)} runs.", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        cells = [Path(r["model_path"]).name, f"`{r['node']}`", Path(r["image_path"]).name,
                 *(_value(r, a) for a in axes), r["status"] + (f" ({r['error'][:60]})" if r["error"] else ""),
                 _num(r["feature_error"], ".4f"), _num(r["rel_flat"], ".3f"), _num(r["psnr"], ".2f"),
                 _num(r["ssim"], ".3f"), _num(r["seconds"], ".1f")]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def figures(rows: list[dict], out: Path, title: str) -> list[Path]:
    """One grid per model and image: a row per node, a column per grid point (or one row of nodes)."""
    import numpy as np
    import torch
    from PIL import Image

    def picture(path: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)

    axes = varying(rows)
    paths = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] in ("ok", "diverged") and r["reconstruction_path"] and Path(r["reconstruction_path"]).is_file():
            groups.setdefault((r["model_path"], r["image_path"]), []).append(r)
    for k, ((model, image), group) in enumerate(sorted(groups.items())):
        nodes = list(dict.fromkeys(r["node"] for r in group))
        points = list(dict.fromkeys(tuple(_value(r, a) for a in axes) for r in group))
        images, labels = [], []
        for node in nodes:
            for point in points:
                match = [r for r in group if r["node"] == node and tuple(_value(r, a) for a in axes) == point]
                if match:
                    r = match[0]
                    images.append(picture(r["reconstruction_path"]))
                    setting = ", ".join(f"{_label(a)} {v}" for a, v in zip(axes, point))
                    labels.append(f"{setting + chr(10) if setting else node + chr(10)}err {r['feature_error']:.3f}, "
                                  f"{r['psnr']:.1f} dB")
                else:  # a run that failed leaves its cell blank
                    images.append(torch.ones(3, 8, 8))
                    labels.append("(no result)")
        name = f"{Path(model).stem}_{Path(image).stem}"
        heading = f"{title}: {Path(model).name}, {Path(image).name}"
        if len(points) > 1:
            paths.append(grid(images, labels, out / f"grid_{k}_{name}.png", title=heading, rows=nodes))
        else:
            paths.append(grid(images, labels, out / f"grid_{k}_{name}.png", title=heading, columns=8))
    return paths


def write_report(store_path: str | Path, out: str | Path | None = None) -> dict:
    """study.md, study.csv and grid_*.png next to the store (or in `out`)."""
    with Store(store_path, create=False) as store:
        rows = store.rows()
    out = Path(out) if out else Path(store_path).parent / f"{Path(store_path).stem}_report"
    out.mkdir(parents=True, exist_ok=True)
    title = rows[0]["study"] if rows else Path(store_path).stem
    md = save_atomic(out / "study.md", lambda tmp: tmp.write_text(markdown(rows, title)))

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["key"])
            writer.writeheader()
            writer.writerows(rows)

    table = save_atomic(out / "study.csv", write_csv)
    return {"rows": len(rows), "markdown": md, "csv": table, "figures": figures(rows, out, title)}
