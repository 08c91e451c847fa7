"""What a run leaves behind: reconstruction PNGs, labelled comparison grids, loss plots, metrics JSON.

Every file is written atomically (temporary file, then rename); an output folder that
already holds files is only reused with force=True.
"""
from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from converters.errors import UserError  # noqa: E402
from converters.network.safe_names import printable  # noqa: E402
from inverter.io.images import all_or_nothing, save_atomic, save_png, to_pil  # noqa: E402


CREATED: list[Path] = []  # output folders this process made: removed again if the command fails


def remove_created() -> None:
    """Remove the output folders this process created (never one that existed before it)."""
    import shutil

    while CREATED:
        shutil.rmtree(CREATED.pop(), ignore_errors=True)


def prepare_out_dir(path: str | Path, force: bool) -> Path:
    path = Path(path)
    try:
        top = path
        while not top.parent.exists() and top.parent != top:
            top = top.parent  # the first folder mkdir will make
        if not top.exists():
            CREATED.append(top)
        if path.exists() and not path.is_dir():
            raise UserError(f"output path {path} exists and is not a folder; choose another --out")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise UserError(f"output folder {path} already holds files; pass --force to overwrite or choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-")  # writable, names fit
        probe.close()
    except OSError as exc:  # unwritable, under a file, a name too long ...
        raise UserError(f"cannot use output folder {printable(str(path), 120)}: {exc.strerror or exc}; "
                        "choose another --out") from None
    return path


def write_json(data: dict, path: str | Path) -> Path:
    text = json.dumps(data, indent=2, default=_jsonable)
    return save_atomic(Path(path), (text + "\n").encode())


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return save_atomic(path, buffer.getvalue())


def fit_text(text: str, chars: int, lines: int = 3) -> str:
    """Text wrapped to `chars` per line and at most `lines` lines, the middle elided (node names of 200
    characters, `/model/backbone/.../Conv`, keep both ends)."""
    import textwrap

    chars = max(int(chars), 12)
    if len(text) > chars * lines:
        keep = chars * lines - 1
        text = text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):]
    return "\n".join(textwrap.wrap(text, chars, break_long_words=True, break_on_hyphens=False)) or text


def grid(images: list[torch.Tensor], labels: list[str], path: str | Path, title: str | None = None,
         rows: list[str] | None = None, columns: int | None = None) -> Path:
    """A labelled grid: one column per image, or rows x columns when `rows` names the rows,
    or wrapped after `columns` images."""
    if rows:
        n_rows, n_cols = len(rows), math.ceil(len(images) / len(rows))
    else:
        n_cols = min(columns or len(images), len(images))
        n_rows = math.ceil(len(images) / n_cols)
    title = fit_text(title, 11 * 2.6 * n_cols) if title else title
    title_in = 0.2 + 0.18 * title.count("\n") if title else 0.0  # inches the (wrapped) title takes
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.9 * n_rows + title_in + (0.2 if title else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(to_pil(images[k]).convert("RGB"))
            ax.set_title(fit_text(labels[k], 30, 2), fontsize=8)
    if rows:
        for r, name in enumerate(rows):
            axes[r, 0].text(-0.05, 0.5, name, transform=axes[r, 0].transAxes, rotation=90,
                            ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if title:  # tight_layout ignores the suptitle: keep the axes (and their 2-line labels) below it
        fig.subplots_adjust(top=1 - (title_in + 0.15) / fig.get_figheight())
    return save_figure(fig, Path(path))


def loss_plot(history: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Each loss term (first batch element) against the iteration, log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in history.items():
        series = np.asarray(values)[:, 0] if np.ndim(values) == 2 else np.asarray(values)
        if len(series) and np.all(np.isfinite(series)) and np.any(series > 0):
            ax.plot(np.arange(1, len(series) + 1), np.abs(series), label=fit_text(name, 32, 2),
                    lw=1.4 if name == "total" else 1)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss term (weighted)")
    ax.set_title(fit_text(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside: never on a curve
    fig.tight_layout()
    return save_figure(fig, Path(path))


@all_or_nothing()
def write_result(result, out_dir: Path) -> dict[str, Path]:
    """reconstruction.png, comparison.png (original | reconstruction), loss.png, metrics.json."""
    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    label = ", ".join(result.nodes)
    batch = result.image.shape[0]
    for b in range(batch):
        suffix = "" if batch == 1 else f"_{b}"
        files[f"reconstruction{suffix}"] = save_png(result.image[b], out_dir / f"reconstruction{suffix}.png")
    originals = [result.original[min(b, result.original.shape[0] - 1)] for b in range(batch)]
    labels = []
    images = []
    for b in range(batch):
        err = ", ".join(f"{v[b]:.3g}" for v in result.feature_error.values())
        flat = ", ".join(f"{v[b]:.2f}" for v in result.flat_error.values())
        verdict = "\nNO BETTER THAN A FLAT IMAGE" if result.flat_error and result.no_better_than_flat[b] else ""
        images += [originals[b], result.image[b]]
        labels += ["original", f"from {label}\nfeature error {err} (vs flat image {flat})\n"
                               f"PSNR {result.psnr[b]:.1f} dB, SSIM {result.ssim[b]:.2f}{verdict}"]
    model = Path(result.model).name if result.model else "model"
    files["comparison"] = grid(images, labels, out_dir / "comparison.png",
                               title=f"{model}: what {label} keeps ({result.config.optimizer}, "
                                     f"{result.iterations} it)")
    files["loss"] = loss_plot(result.history, out_dir / "loss.png", title=f"{model} {label}")
    files["metrics"] = write_json(result.summary(), out_dir / "metrics.json")
    return files


# --- one writer per result type: the CLI and scripts/figures.py call these -----------------
@all_or_nothing()
def write_visualization(pixels: torch.Tensor, run, what: str, out_dir: Path, title: str, config) -> dict:
    """visualization.png (one panel per batch element), loss.png, metrics.json."""
    out_dir = Path(out_dir)
    figure = grid(list(pixels), [f"{what}\nseed {config.seed + b}" for b in range(len(pixels))],
                  out_dir / "visualization.png", title=title)
    loss_plot(run.history, out_dir / "loss.png", title=what)
    summary = {"what": what, **run.summary(), "config": config.to_dict(), "figure": str(figure)}
    write_json(summary, out_dir / "metrics.json")
    return summary


def saliency_figure(rgb01: torch.Tensor, maps: torch.Tensor, index: int, path: Path, title: str | None = None) -> Path:
    """image | saliency map (hot colour map, clipped at the 99.5th percentile)."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    axes[0].imshow(to_pil(rgb01).convert("RGB"))
    axes[0].set_title("image", fontsize=9)
    shown = maps[0].detach().cpu().numpy()
    axes[1].imshow(shown, cmap="hot", vmin=0, vmax=float(np.percentile(shown, 99.5)) or None)
    axes[1].set_title(f"saliency of class {index}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path))


@all_or_nothing()
def write_saliency(rgb01: torch.Tensor, maps: torch.Tensor, index: int, out_dir: Path) -> dict:
    """saliency.png, metrics.json."""
    figure = saliency_figure(rgb01, maps, index, Path(out_dir) / "saliency.png")
    summary = {"class": index, "max": float(maps.max()), "figure": str(figure)}
    write_json(summary, Path(out_dir) / "metrics.json")
    return summary


def fooling_figure(result, path: Path, title: str) -> Path:
    """original | fooled | magnified difference."""
    gain = 0.5 / max(result.max_pixel_change, 1e-8)
    return grid([result.original[0], result.image[0], result.magnified_difference()[0]],
                [f"original: class {result.before}", f"fooled: class {result.after}", f"difference x{gain:.0f}"],
                path, title=title)


@all_or_nothing()
def write_fooling(result, out_dir: Path, title: str) -> dict:
    """fooled.png, comparison.png, metrics.json."""
    out_dir = Path(out_dir)
    save_png(result.image, out_dir / "fooled.png")
    fooling_figure(result, out_dir / "comparison.png", title)
    summary = result.summary()
    write_json(summary, out_dir / "metrics.json")
    return summary


@all_or_nothing()
def write_style(content: torch.Tensor, style: torch.Tensor, pixels: torch.Tensor, run, out_dir: Path,
                title: str, config) -> dict:
    """styled.png, comparison.png (content | style | result), loss.png, metrics.json."""
    out_dir = Path(out_dir)
    save_png(pixels, out_dir / "styled.png")
    grid([content[0], style[0], pixels[0]], ["content", "style", "result"], out_dir / "comparison.png", title=title)
    loss_plot(run.history, out_dir / "loss.png", title="style transfer")
    summary = {**run.summary(), "config": config.to_dict()}
    write_json(summary, out_dir / "metrics.json")
    return summary
