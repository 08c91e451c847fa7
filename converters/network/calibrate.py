"""The preprocessing of a network that records none, calibrated from the network itself.

Candidates are the common conventions: [0, 1], [0, 255], [-1, 1], ImageNet-standardised and
Caffe's BGR minus the ImageNet mean on 0-255. A real photo (Grace Hopper, shipped with
matplotlib) is fed under each, and the first Conv's output is compared with what the
network was trained on:

- with a BatchNorm right after that Conv (not folded): its running mean and variance are
  the statistics of that output on the training data. Score: the median over channels of
  ((m - mu)^2 / (var + s^2) + (log(s / sigma))^2), m and s the photo's per-channel mean and
  std. Measured on the corpus (scripts/corpus.py): the file's own convention scores lowest
  on 4 of 5 Paddle files; the fifth (an OCR text-line net) picks [0, 1] for its [-1, 1].
- without one (BatchNorm folded into the Conv, or none): a trained, normalised network's
  pre-activations have a spread of order 1 under its own preprocessing (after folding their
  per-channel std is BN's gamma). Score: |median over channels of log(std)|. Measured on the
  corpus: this finds the range (0-1 against 0-255, a factor 255) every time; within the 0-1
  family ([0, 1], [-1, 1], ImageNet: factors of about 2) it is a weak signal, said as "low".

The result is an InputSpec with source "calibrated: ..." and confidence high/medium/low.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from onnx import numpy_helper

from converters.input_spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec

log = logging.getLogger(__name__)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras' `caffe` mode, torchvision's Caffe ports
# name -> (scale, mean, std, channel order), in the network's own channel order and scale
CANDIDATES: dict[str, tuple[float, tuple[float, ...], tuple[float, ...], str]] = {
    "[0, 1]": (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "RGB"),
    "[0, 255]": (255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "RGB"),
    "[-1, 1]": (255.0, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), "RGB"),
    "ImageNet-standardised": (1.0, IMAGENET_MEAN, IMAGENET_STD, "RGB"),
    "Caffe BGR mean": (255.0, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), "BGR"),
}
# BatchNorm score: the best is "high" when the next is this many times worse, else "medium"
BN_HIGH_RATIO = 3.0
# no BatchNorm: "medium" when the next candidate's |log std| is this much further from 0, else "low"
SPREAD_MEDIUM_MARGIN = 1.0


def candidate(base: InputSpec, name: str) -> InputSpec:
    """`base` (layout, size, channels kept) with the normalisation of candidate `name`."""
    scale, mean, std, order = CANDIDATES[name]
    if base.channels == 1:  # a grey network: one mean and std (their average), no channel order
        mean, std, order = (sum(mean) / 3,), (sum(std) / 3,), "RGB"
    return InputSpec(layout=base.layout, height=base.height, width=base.width, channels=base.channels,
                     channel_order=order, scale=scale, mean=tuple(mean), std=tuple(std),
                     source=f"candidate {name}")


def _photo(size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image

    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    im = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(im, np.float32) / 255).permute(2, 0, 1).unsqueeze(0)


def _first_conv(network):
    return next((n for n in network.nodes if n.op_type == "Conv" and not n.unsupported and n.module_name), None)


def _batchnorm_after(network, conv):
    """(running mean, running var) of a BatchNorm that takes the Conv's output directly, or None."""
    inits = {t.name: t for t in network.onnx_model.graph.initializer}
    for n in network.nodes:
        if n.op_type == "BatchNormalization" and n.inputs and n.inputs[0] == conv.outputs[0]:
            if len(n.inputs) >= 5 and n.inputs[3] in inits and n.inputs[4] in inits:
                mean = torch.from_numpy(numpy_helper.to_array(inits[n.inputs[3]]).astype(np.float64))
                var = torch.from_numpy(numpy_helper.to_array(inits[n.inputs[4]]).astype(np.float64))
                return mean.flatten(), var.flatten()
    return None


def scores(network) -> tuple[dict[str, float], str]:
    """Each candidate's score (lower is better) and the signal used ("batchnorm" or "spread")."""
    from converters.input_spec import standardise

    conv = _first_conv(network)
    if conv is None:
        return {}, ""
    bn = _batchnorm_after(network, conv)
    base = network.input_spec
    photo = standardise(_photo(base.size)).to(network.device, network.dtype)
    out: dict[str, float] = {}
    try:
        for name in CANDIDATES:
            network.input_spec = candidate(base, name)
            with torch.no_grad():
                y = network.from_standardised(photo, [conv.name])[0].double().cpu()
            if y.dim() != 4:
                return {}, ""
            m, s = y.mean((0, 2, 3)), y.std((0, 2, 3)).clamp_min(1e-12)
            if bn is not None and bn[0].numel() == m.numel():
                mu, var = bn
                per_channel = (m - mu) ** 2 / (var + s**2 + 1e-12) + torch.log(s / var.clamp_min(1e-12).sqrt()) ** 2
                out[name] = float(per_channel.median())
            else:
                out[name] = abs(float(torch.log(s).median()))
    finally:
        network.input_spec = base
    return out, ("batchnorm" if bn is not None else "spread")


def calibrate(network) -> InputSpec:
    """The network's input spec with the best candidate's normalisation (layout, size and channels
    kept), its source saying how it was found and its confidence; the spec unchanged when nothing can
    be measured (a 4-channel input, no Conv)."""
    base = network.input_spec
    if base.channels == 4:
        return base
    try:
        found, signal = scores(network)
    except Exception as exc:  # a graph that cannot run the first Conv alone: keep the default, say so
        log.debug("calibration failed: %s", exc)
        return base
    finite = {k: v for k, v in found.items() if math.isfinite(v)}
    if len(finite) < 2:
        return base
    ranked = sorted(finite, key=finite.get)
    best, second = ranked[0], ranked[1]
    if signal == "batchnorm":
        confidence = "high" if finite[second] > BN_HIGH_RATIO * finite[best] else "medium"
        how = "the first BatchNorm's running statistics against the photo's at the first Conv"
    else:
        confidence = "medium" if finite[second] - finite[best] >= SPREAD_MEDIUM_MARGIN else "low"
        how = "the spread of the first Conv's output on a photo (no BatchNorm to compare with)"
    source = (f"calibrated: {best} by {how}; score {finite[best]:.3g}, next {second} {finite[second]:.3g}; "
              f"confidence {confidence}")
    chosen = candidate(base, best)
    return InputSpec(layout=chosen.layout, height=chosen.height, width=chosen.width, channels=chosen.channels,
                     channel_order=chosen.channel_order, scale=chosen.scale, mean=chosen.mean, std=chosen.std,
                     source=source, confidence=confidence)


def candidate_name(spec: InputSpec) -> str | None:
    """The candidate whose map from the engine's space equals this spec's, or None."""
    a, b = spec._affine("cpu", torch.float64)
    for name in CANDIDATES:
        c = candidate(spec, name)
        ca, cb = c._affine("cpu", torch.float64)
        same_order = spec.channels == 1 or c.channel_order == spec.channel_order
        if same_order and torch.allclose(a, ca, rtol=1e-4) and torch.allclose(b, cb, rtol=1e-4, atol=1e-4):
            return name
    return None
