"""What a network expects as input: layout, size, channel order, value range and normalisation.

The inversion engine always optimises an image in *ImageNet-standardised RGB, NCHW* space
((rgb01 - IMAGENET_MEAN) / IMAGENET_STD) whatever the network, so learning rates and
regulariser weights mean the same thing for a Caffe, Keras or PyTorch export of one net.
`InputSpec.adapt` is the fixed, exact and differentiable map from that space to the tensor
the ONNX graph takes.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field

import torch

from converters.errors import ModelError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey (ITU-R 601, Pillow's "L")
METADATA_KEY = "invert_onnx.input_spec"


@dataclass(frozen=True)
class InputSpec:
    """Input of a network.

    mean and std are per channel in the network's own channel order and value scale:
    network_input = (pixels * scale - mean) / std, pixels in [0, 1].
    """

    layout: str = "NCHW"  # or "NHWC"
    height: int | None = None
    width: int | None = None
    channel_order: str = "RGB"  # or "BGR"
    scale: float = 1.0  # 1 for [0, 1] pixels, 255 for [0, 255]
    mean: tuple[float, ...] = IMAGENET_MEAN  # one value per channel
    std: tuple[float, ...] = IMAGENET_STD
    source: str = field(default="default", compare=False)  # where the spec came from
    channels: int = 3  # 1: the network sees the image's luma (grey); 4: RGB plus an opaque 4th channel
    # how sure the normalisation (scale, mean, std, channel order) is: "known" (recorded, typed or a
    # framework's convention), "high" / "medium" / "low" (calibrated from the network:
    # converters.network.calibrate), "guess" (nothing known: the ImageNet default, to be calibrated)
    confidence: str = field(default="known", compare=False)

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ModelError(f"input layout must be NCHW or NHWC, not {self.layout!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ModelError(f"channel order must be RGB or BGR, not {self.channel_order!r}")
        if self.channels not in (1, 3, 4):
            raise ModelError(f"input has {self.channels} channels; invert-onnx inverts 1 (grey), 3 (RGB) "
                             "or 4 (RGB + a 4th channel) channel images")
        if len(self.mean) != self.channels or len(self.std) != self.channels or any(s == 0 for s in self.std):
            raise ModelError(f"input mean and std need {self.channels} value(s) each (one per channel), std non-zero")

    @property
    def size(self) -> tuple[int, int] | None:
        if self.height is None or self.width is None:
            return None
        return (self.height, self.width)

    def with_size(self, height: int, width: int) -> "InputSpec":
        d = asdict(self)
        d.update(height=int(height), width=int(width))
        return InputSpec(**d)

    def replace(self, **changes) -> "InputSpec":
        d = asdict(self)
        d.update({k: v for k, v in changes.items() if v is not None})
        for key in ("mean", "std"):
            d[key] = tuple(float(v) for v in d[key])
        channels = changes.get("channels") or self.channels
        for key in ("mean", "std"):  # one value given: the same for every channel
            if changes.get(key) is not None and len(d[key]) == 1 and channels > 1:
                d[key] = d[key] * channels
        if changes.get("channels") is None and changes.get("mean") is not None and len(d["mean"]) != self.channels:
            d["channels"] = len(d["mean"])  # --mean with one value per channel sets the count
            if len(d["std"]) != d["channels"] and changes.get("std") is None:
                d["std"] = InputSpec(channels=3, std=tuple(d["std"])[:3]).with_channels(d["channels"]).std \
                    if d["channels"] in (1, 4) and len(d["std"]) == 3 else d["std"]
        return InputSpec(**d)

    @property
    def colour(self) -> str:
        """What the network sees, in words: grey, RGB, BGR, RGB+1 (a 4th channel)."""
        return {1: "grey", 3: self.channel_order}.get(self.channels, f"{self.channel_order}+{self.channels - 3}")

    def with_channels(self, channels: int) -> "InputSpec":
        """This spec for a `channels`-channel input: a 3-value mean/std becomes its average for
        1 channel, and gains (0, 1) for a 4th channel, unless it already has that length."""
        if channels == self.channels:
            return self
        d = asdict(self)
        d["channels"] = channels
        for key, extra in (("mean", 0.0), ("std", 1.0)):
            v = tuple(d[key])
            if len(v) != channels and channels in (1, 4) and len(v) == 3:
                v = (sum(v) / 3,) if channels == 1 else v + (extra * self.scale if key == "mean" else self.scale,)
            d[key] = v
        return InputSpec(**d)

    def tensor_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The shape of the tensor the network takes at this size: (B, C, H, W) or (B, H, W, C)."""
        h, w = self.size
        c = self.channels
        return (batch, c, h, w) if self.layout == "NCHW" else (batch, h, w, c)

    def is_identity(self) -> bool:
        """True when `adapt` maps the engine's space onto itself exactly (torchvision's preprocessing):
        skipping it saves a multiply, an add and their backward per step."""
        if self.layout != "NCHW" or self.channel_order != "RGB" or self.channels != 3:
            return False
        for dtype in (torch.float32, torch.float64):
            a, b = self._affine("cpu", dtype)
            if not (bool((a == 1).all()) and bool((b == 0).all())):
                return False
        return True

    def _affine(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """a, b with network_input_channels = a * v + b, v standardised RGB, NCHW."""
        mean = list(self.mean)[:3]
        std = list(self.std)[:3]
        if self.channels == 1:  # luma of the RGB image (ITU-R 601), then the one mean/std
            luma = torch.tensor(LUMA, device=device, dtype=dtype)
            im_mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype)
            im_std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype)
            a = luma * im_std * self.scale / std[0]
            b = ((luma * im_mean).sum() * self.scale - mean[0]) / std[0]
            return a.view(1, 3, 1, 1), b.view(1, 1, 1, 1)
        if self.channel_order == "BGR":  # bring the network's per-channel numbers to RGB order
            mean, std = mean[::-1], std[::-1]
        im_mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype)
        im_std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype)
        mean_t = torch.tensor(mean, device=device, dtype=dtype)
        std_t = torch.tensor(std, device=device, dtype=dtype)
        a = im_std * self.scale / std_t
        b = (im_mean * self.scale - mean_t) / std_t
        return a.view(1, 3, 1, 1), b.view(1, 3, 1, 1)

    def adapt(self, v: torch.Tensor) -> torch.Tensor:
        """ImageNet-standardised RGB NCHW -> the tensor this network takes."""
        a, b = self._affine(v.device, v.dtype)
        if self.channels == 1:
            x = (v * a).sum(1, keepdim=True) + b
        else:
            x = v * a + b
            if self.channel_order == "BGR":
                x = x.flip(1)
            if self.channels == 4:  # an opaque 4th channel (alpha) at its own mean/std
                fourth = (self.scale - self.mean[3]) / self.std[3]
                x = torch.cat([x, torch.full_like(x[:, :1], fourth)], 1)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return x

    @property
    def guessed(self) -> bool:
        """True when nothing records the normalisation (the loader calibrates it from the network)."""
        return self.confidence == "guess"

    def to_json(self) -> str:
        """The spec for the ONNX metadata; a guessed normalisation is marked `"guessed": true` so a
        loader calibrates it instead of trusting it (the layout, size and channels stay known)."""
        d = asdict(self)
        d.pop("source")
        d.pop("confidence")
        if self.guessed:
            d["guessed"] = True
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> "InputSpec":
        """The spec recorded in a model's metadata, checked key by key: a malformed entry is refused
        in one line naming the key (ModelError), never half-applied."""
        fields = _recorded_fields(text)
        if fields.pop("guessed", False):  # convert wrote its own guess: say so wherever it is used
            return cls(**fields, source=f"{source}, marked as a guess", confidence="guess")
        return cls(**fields, source=source)


# --- the recorded metadata is untrusted text: parsed with limits, every key checked before use
METADATA_LIMIT = 64 * 1024  # characters: a real spec is ~200
METADATA_DEPTH = 4  # bracket nesting: a real spec has 2 ({"mean": [...]})
METADATA_RANGE = 1e6  # |mean|, std and scale beyond this are not a preprocessing


class MetadataError(ModelError):
    """The model's recorded input_spec is malformed."""


def _bad(key: str | None, why: str) -> MetadataError:
    where = f"key {key!r} of " if key else ""
    error = MetadataError(f"{where}the model's {METADATA_KEY} metadata {why}; remove or fix that metadata "
                          "(or re-export the model), or pass --mean/--std/--scale to override it")
    error.reason = f"{where}{METADATA_KEY} {why}"
    return error


def _nesting(text: str) -> int:
    """The deepest bracket nesting of JSON text, strings skipped (checked before json.loads recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > METADATA_DEPTH:
                return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def _number(key: str, value, low: float, high: float, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise _bad(key, f"must be {'a whole number' if integer else 'a number'}, not {json.dumps(value)[:40]}")
    if not (math.isfinite(value) and low <= value <= high):
        raise _bad(key, f"must be between {low:g} and {high:g}, not {value!r:.40}")
    return value


def _recorded_fields(text: str) -> dict:
    """InputSpec fields from the metadata text; MetadataError names the first bad key."""
    if not isinstance(text, str) or len(text) > METADATA_LIMIT:
        raise _bad(None, f"is over {METADATA_LIMIT} characters")
    if _nesting(text) > METADATA_DEPTH:
        raise _bad(None, f"nests brackets more than {METADATA_DEPTH} deep")
    try:
        data = json.loads(text, parse_constant=lambda name: float("nan"))  # NaN, Infinity: refused below
    except (ValueError, RecursionError) as exc:
        raise _bad(None, f"is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise _bad(None, "must be a JSON object")
    known = {"layout", "height", "width", "channel_order", "scale", "mean", "std", "channels", "guessed"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise _bad(unknown[0][:40], f"is not one of {', '.join(sorted(known))}")
    out: dict = {}
    if "guessed" in data:
        if not isinstance(data["guessed"], bool):
            raise _bad("guessed", f"must be true or false, not {json.dumps(data['guessed'])[:40]}")
        out["guessed"] = data["guessed"]
    for key, choices in (("layout", ("NCHW", "NHWC")), ("channel_order", ("RGB", "BGR"))):
        if key in data:
            if data[key] not in choices:
                raise _bad(key, f"must be {' or '.join(choices)}, not {json.dumps(data[key])[:40]}")
            out[key] = data[key]
    for key in ("height", "width"):
        if data.get(key) is not None:
            out[key] = int(_number(key, data[key], 1, 65536, integer=True))
    if "scale" in data:
        out["scale"] = float(_number("scale", data["scale"], 1 / METADATA_RANGE, METADATA_RANGE))
    for key, low in (("mean", -METADATA_RANGE), ("std", 1 / METADATA_RANGE)):
        if key not in data:
            raise _bad(key, "is missing")
        values = data[key]
        if not isinstance(values, list) or not 1 <= len(values) <= 4:
            raise _bad(key, f"must be a list of 1 to 4 numbers, not {json.dumps(values)[:40]}")
        out[key] = tuple(float(_number(key, v, low, METADATA_RANGE)) for v in values)
    out["channels"] = int(_number("channels", data["channels"], 1, 4, integer=True)) if "channels" in data \
        else len(out["mean"])
    if len(out["mean"]) != out["channels"] or len(out["std"]) != out["channels"]:
        raise _bad("mean" if len(out["mean"]) != out["channels"] else "std",
                   f"must hold one value per channel ({out['channels']})")
    if out["channels"] == 2:
        raise _bad("channels", "must be 1, 3 or 4")
    return out


def guess_layout(dims: list[int | None], default: str = "NCHW") -> str:
    """NCHW or NHWC from a rank-4 input shape (None for a dynamic axis): the axis that holds a
    channel count (1, 3 or 4) when only one of axes 1 and 3 does, else `default` (ONNX's NCHW,
    TensorFlow's NHWC). The one rule the loader and every front-end use."""
    channels = (1, 3, 4)
    first, last = dims[1] in channels, dims[3] in channels
    if first != last:
        return "NCHW" if first else "NHWC"
    return default


def recorded_spec(model) -> InputSpec | None:
    """The InputSpec an ONNX model records in its metadata (invert-onnx's exports), or None."""
    meta = {p.key: p.value for p in model.metadata_props}
    return InputSpec.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else None


_SIZE = re.compile(r"^\s*(-?\d+)\s*(?:[,x]\s*(-?\d+))?\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'224' or '224,160' or '224x160' -> (H, W). A size under 1 is parsed: the network refuses it
    naming the smallest size it takes (`converters.network.checks.check_size`)."""
    m = _SIZE.match(str(text))
    if not m or max(len(m.group(1)), len(m.group(2) or "")) > 6:
        raise UserError(f"size must look like 224 or 224,160, not {text!r}")
    h = int(m.group(1))
    return (h, int(m.group(2) or h))


def standardise(rgb01: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1], RGB NCHW -> the engine's optimisation space."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


def destandardise(v: torch.Tensor) -> torch.Tensor:
    """The engine's optimisation space -> pixels (not clipped), RGB NCHW."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=v.dtype, device=v.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=v.dtype, device=v.device).view(1, 3, 1, 1)
    return v * std + mean
