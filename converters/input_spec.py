"""What a network expects as input: layout, size, channel order, value range and normalisation.

The inversion engine always optimises an image in *ImageNet-standardised RGB, NCHW* space
((rgb01 - IMAGENET_MEAN) / IMAGENET_STD) whatever the network, so learning rates and
regulariser weights mean the same thing for a Caffe, Keras or PyTorch export of one net.
`InputSpec.adapt` is the fixed, exact and differentiable map from that space to the tensor
the ONNX graph takes.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import torch

from converters.errors import ModelError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = field(default="default", compare=False)  # where the spec came from

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ModelError(f"input layout must be NCHW or NHWC, not {self.layout!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ModelError(f"channel order must be RGB or BGR, not {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ModelError("input mean and std need three values each, std non-zero")

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
        return InputSpec(**d)

    def tensor_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The shape of the tensor the network takes at this size: (B, 3, H, W) or (B, H, W, 3)."""
        h, w = self.size
        return (batch, 3, h, w) if self.layout == "NCHW" else (batch, h, w, 3)

    def is_identity(self) -> bool:
        """True when `adapt` maps the engine's space onto itself exactly (torchvision's preprocessing):
        skipping it saves a multiply, an add and their backward per step."""
        if self.layout != "NCHW" or self.channel_order != "RGB":
            return False
        for dtype in (torch.float32, torch.float64):
            a, b = self._affine("cpu", dtype)
            if not (bool((a == 1).all()) and bool((b == 0).all())):
                return False
        return True

    def _affine(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """a, b with network_input_channels = a * v + b, v standardised RGB, NCHW."""
        mean = list(self.mean)
        std = list(self.std)
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
        x = v * a + b
        if self.channel_order == "BGR":
            x = x.flip(1)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return x

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("source")
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> "InputSpec":
        try:
            d = json.loads(text)
            d["mean"] = tuple(d["mean"])
            d["std"] = tuple(d["std"])
            return cls(**d, source=source)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"the model's {METADATA_KEY} metadata is not valid ({exc}); "
                             "re-export the model or pass --mean/--std/--scale") from None


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


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[,x]\s*(\d+))?\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'224' or '224,160' or '224x160' -> (H, W)."""
    m = _SIZE.match(str(text))
    if not m or int(m.group(1)) <= 0 or int(m.group(2) or 1) <= 0:
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
