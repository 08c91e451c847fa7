"""The seeds' studies: lambda and learning-rate sweeps, layer sweeps, as labelled figures + JSON/CSV.

Settings sweeps run as one batch (the batch dimension, per-element lr and lambdas); layer
sweeps run node after node with one progress bar across runs. Every run's numbers are saved
as it finishes (runs/<key>.json), so a sweep started again in the same folder resumes.
"""
from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from converters.network.names import canonical_name
from converters.network.network import Network
from inverter.config import ConfigError, InversionConfig
from inverter.io.images import all_or_nothing, load_image, save_atomic, save_png
from inverter.io.reports import grid, save_figure, write_json
from inverter.methods.inversion import invert

log = logging.getLogger(__name__)
SWEEP_KINDS = ("lambda_alpha", "lambda_tv", "lr", "layer")
DEFAULT_VALUES = {"lambda_alpha": [1e-7, 1e-6, 1e-5, 1e-4, 1e-3], "lambda_tv": [1e-7, 1e-6, 1e-5, 1e-4, 1e-3],
                  "lr": [0.01, 0.03, 0.1, 0.3]}
LAYER_OPS = ("Conv", "Relu", "MaxPool", "AveragePool", "BatchNormalization")


RESNET_BLOCK = re.compile(r"res\d[a-z]\d*")  # res2a ... res4b22: one residual block
SWEEP_MARKER = ".invert-onnx-sweep"  # in runs/: the folder was made by a sweep and may be resumed


def default_nodes(network: Network, kind: str) -> list[str]:
    """Layer sweep: every conv/relu/pool/bn node, or for a ResNet conv1, pool1, every block (res2a ... res5c) and
    pool5, as the seeds' ResNet sweeps run; lambda sweeps: the first five conv-block outputs."""
    data = [n for n in network.nodes if n.on_data_path and n.op_type in LAYER_OPS]
    if kind == "layer":
        names = [canonical_name(n) or "" for n in network.nodes]
        blocks = [name for name in names if RESNET_BLOCK.fullmatch(name)]
        return ([name for name in names if name in ("conv1", "pool1") or RESNET_BLOCK.fullmatch(name)]
                + [name for name in names if name == "pool5"]) if blocks else [n.name for n in data]
    relus = [n for n in data if n.op_type == "Relu"] or data
    return [_short(n) for n in relus[:5]]


def _short(node) -> str:
    """The friendliest name of a node: a canonical alias when there is one."""
    return canonical_name(node) or node.name


def _key(*parts) -> str:
    return "_".join(str(p).replace("/", "_").strip("_") for p in parts)


def run_sweep(network: Network, image: str | Path, kind: str, out_dir: Path, config: InversionConfig,
              nodes: list[str] | None = None, values: list[float] | None = None, preset_label: str = "",
              progress: bool = True, title: str | None = None) -> dict:
    if kind not in SWEEP_KINDS:
        raise ConfigError(f"sweep kind must be one of {', '.join(SWEEP_KINDS)}, not {kind!r}")
    out_dir = Path(out_dir)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    (out_dir / "runs" / SWEEP_MARKER).touch()  # this folder is a sweep's: only such a folder is resumed
    nodes = nodes or default_nodes(network, kind)
    for n in nodes:
        network.resolve(n)  # unknown names fail before any work
    values = values or DEFAULT_VALUES.get(kind, [])
    rgb = load_image(image, network.input_spec.size)
    records: list[dict] = []
    pictures: dict[str, object] = {}
    jobs = [(n, None) for n in nodes] if kind == "layer" else [(n, tuple(values)) for n in nodes]
    bar = tqdm(jobs, desc=f"{kind} sweep", unit="run", disable=not progress)
    for node, vals in bar:
        keys = [_key(node)] if vals is None else [_key(node, kind, v) for v in vals]
        done = [out_dir / "runs" / f"{k}.json" for k in keys]
        if all(p.is_file() for p in done):  # resume: only runs that finished were saved
            previous = [json.loads(p.read_text()) for p in done]
            if all(r.get("stopped", "done") != "interrupted" for r in previous):
                records += previous
                continue
        if vals is None:
            result = invert(network, rgb, node, config, progress=False, check=False)  # rows flag it
            settings = [{}]
        else:
            configs = [config.replace(**{kind: v}) for v in vals]
            result = invert(network, rgb, node, configs=configs, progress=False, check=False)
            settings = [{kind: v} for v in vals]
        if result.stopped == "interrupted":  # never recorded as done: a resume runs it again
            raise KeyboardInterrupt
        for b, (key, extra) in enumerate(zip(keys, settings)):
            record = {"node": node, **extra, "feature_error": result.feature_error[node][b],
                      "feature_error_vs_flat": result.flat_error[node][b],
                      "no_better_than_flat": result.no_better_than_flat[b],
                      "psnr_db": result.psnr[b], "ssim": result.ssim[b],
                      "seconds_per_run": result.seconds / len(keys), "stopped": result.stopped,
                      "loss_curve": result.history[f"feature:{node}"][:, b].tolist()}
            with all_or_nothing():  # a run's picture and numbers: both or neither (a resume redoes it)
                save_png(result.image[b], out_dir / "runs" / f"{key}.png")
                write_json(record, out_dir / "runs" / f"{key}.json")
            records.append(record)
    for rec in records:
        key = _key(rec["node"]) if kind == "layer" else _key(rec["node"], kind, rec[kind])
        pictures[key] = out_dir / "runs" / f"{key}.png"
    return _report(records, pictures, kind, nodes, values, rgb, out_dir, config, preset_label, title)


@all_or_nothing()
def _report(records, pictures, kind, nodes, values, rgb, out_dir, config, preset_label, title=None) -> dict:
    import torch
    from PIL import Image

    def picture(key):
        return torch.from_numpy(np.asarray(Image.open(pictures[key]).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)

    label = f"{preset_label or 'settings'}; {config.optimizer}, {config.iterations} it"
    if kind == "layer":
        images = [rgb[0]] + [picture(_key(r["node"])) for r in records]
        labels = ["original"] + [f"{r['node'][-28:]}\nerr {r['feature_error']:.3f}{_vs_flat(r)}, {r['psnr_db']:.1f} dB"
                                 for r in records]
        figure = grid(images, labels, out_dir / "sweep.png", title=title or f"Layer sweep ({label})", columns=8)
    else:
        images, labels = [], []
        for node in nodes:
            for v in values:
                rec = next(r for r in records if r["node"] == node and r[kind] == v)
                images.append(picture(_key(node, kind, v)))
                labels.append(f"{kind} {v:g}\nerr {rec['feature_error']:.3f}{_vs_flat(rec)}, {rec['psnr_db']:.1f} dB")
        figure = grid(images, labels, out_dir / "sweep.png", rows=nodes, title=title or f"{kind} sweep ({label})")
    if kind == "lr":
        _lr_curves(records, out_dir / "loss_curves.png", label)
    rows = [{k: v for k, v in r.items() if k != "loss_curve"} for r in records]
    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)

    save_atomic(out_dir / "sweep.csv", write_csv)
    summary = {"kind": kind, "preset": preset_label, "config": config.to_dict(), "nodes": nodes,
               "values": values, "runs": rows, "figure": str(figure)}
    write_json(summary, out_dir / "sweep.json")
    return summary


def flat_runs(rows: list[dict]) -> str:
    """A warning naming the runs no better than a flat image, or '' (the CLI prints it on stderr)."""
    flat = [r for r in rows if r.get("no_better_than_flat")]
    if not flat:
        return ""
    names = ", ".join(r["node"] + "".join(f" {k} {r[k]:g}" for k in SWEEP_KINDS if k in r) for r in flat)
    return f"warning: {len(flat)} run(s) no better than a flat image (marked in the table and figure): {names}"


def _vs_flat(record: dict) -> str:
    """' (0.12 of flat)', or ' FLAT' when the run is no better than a flat image (older runs: '')."""
    if "feature_error_vs_flat" not in record:
        return ""
    return " FLAT" if record.get("no_better_than_flat") else f" ({record['feature_error_vs_flat']:.2f} of flat)"


def _lr_curves(records, path: Path, label: str) -> None:
    import matplotlib.pyplot as plt

    nodes = list(dict.fromkeys(r["node"] for r in records))
    fig, axes = plt.subplots(1, len(nodes), figsize=(3.4 * len(nodes), 3), squeeze=False)
    for ax, node in zip(axes[0], nodes):
        for r in (r for r in records if r["node"] == node):
            ax.plot(r["loss_curve"], label=f"lr {r['lr']:g}")
        ax.set_yscale("log")
        ax.set_title(node, fontsize=8)
        ax.set_xlabel("iteration")
    axes[0][0].set_ylabel("normalised feature error")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Learning-rate sweep ({label})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
