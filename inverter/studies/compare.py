"""The same layer of several models, one image, one config: what does each keep?

One labelled grid (original | one column per model) and a table (Markdown + JSON) of
feature error, PSNR/SSIM, time and parity with onnxruntime per model.
"""
from __future__ import annotations

from pathlib import Path

from converters.network.network import Network
from inverter.config import InversionConfig
from inverter.methods.inversion import InversionResult, invert
from inverter.io.images import all_or_nothing, load_image, save_atomic, save_png
from inverter.io.reports import grid, write_json


def compare(models: dict[str, Network], image: str | Path, nodes: list[str], config: InversionConfig,
            progress: bool = True) -> dict[str, InversionResult]:
    """Run the same inversion on each model (the image is resized once per model's input size)."""
    results = {}
    for label, network in models.items():
        rgb = load_image(image, network.input_spec.size)
        results[label] = invert(network, rgb, nodes, config, progress=progress, check=False)  # the table flags it
        if results[label].stopped == "interrupted":  # Ctrl-C stops the comparison, not only this model
            break
    return results


def comparison_table(models: dict[str, Network], results: dict[str, InversionResult]) -> list[dict]:
    rows = []
    for label, result in results.items():
        network = models[label]
        parity = network.check_parity(nodes=result.resolved)
        rows.append({"model": label, "resolved": result.resolved,
                     "feature_error": {k: v[0] for k, v in result.feature_error.items()},
                     "feature_error_vs_flat": {k: v[0] for k, v in result.flat_error.items()},
                     "no_better_than_flat": result.no_better_than_flat[0],
                     "psnr_db": result.psnr[0], "ssim": result.ssim[0], "seconds": result.seconds,
                     "stopped": result.stopped,
                     "parity_vs_onnxruntime": parity.max_error})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | node | feature error | vs flat image (1 = no better) | PSNR (dB) | SSIM | time (s) | "
             "parity vs onnxruntime |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = ", ".join(f"{v:.4f}" for v in r["feature_error"].values())
        flat = ", ".join(f"{v:.3f}" for v in r["feature_error_vs_flat"].values())
        flat += " **no better than flat**" if r["no_better_than_flat"] else ""
        lines.append(f"| {r['model']} | `{', '.join(r['resolved'])}` | {err} | {flat} | {r['psnr_db']:.2f} | "
                     f"{r['ssim']:.3f} | {r['seconds']:.1f} | {r['parity_vs_onnxruntime']:.1e} |")
    return "\n".join(lines) + "\n"


@all_or_nothing()
def write_comparison(models: dict[str, Network], results: dict[str, InversionResult], out_dir: Path,
                     title: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    rows = comparison_table(models, results)
    first = next(iter(results.values()))
    images = [first.original[0]] + [r.image[0] for r in results.values()]
    labels = ["original"] + [f"{k}\nerr {next(iter(r.feature_error.values()))[0]:.3f} "
                             f"({next(iter(r.flat_error.values()))[0]:.2f} of flat), PSNR {r.psnr[0]:.1f} dB"
                             + ("\nNO BETTER THAN FLAT" if r.no_better_than_flat[0] else "")
                             for k, r in results.items()]
    files = {"grid": grid(images, labels, out_dir / "compare.png", title=title)}
    for label, result in results.items():
        files[f"reconstruction:{label}"] = save_png(result.image, out_dir / f"{Path(label).stem}.png")
    text = markdown_table(rows)
    files["markdown"] = save_atomic(out_dir / "compare.md", f"# {title}\n\n{text}".encode())
    files["json"] = write_json({"title": title, "config": first.config.to_dict(), "rows": rows},
                               out_dir / "compare.json")
    return files
