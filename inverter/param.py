"""Image parameterisations: what the optimiser actually moves.

`pixel`: the image itself (engine space: ImageNet-standardised RGB NCHW).
`fourier`: the image's 2-D real spectrum, scaled by 1/frequency so low frequencies move first
(Olah et al., Distill 2017); optionally with decorrelated colour (a fixed 3x3 colour
square-root covariance). Each batch element is its own leaf tensor, so elements can take
their own learning rate and never share optimiser state. `bounded` passes the image through
a sigmoid so that pixels stay valid (activation maximisation would otherwise grow contrast
without limit).
"""
from __future__ import annotations

from typing import Protocol

import torch

from converters.input_spec import destandardise, standardise

# Square root of an ImageNet colour covariance (the constant Lucid/Lucent use), RGB.
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_NORM = COLOR_SQRT.norm(dim=0).max()


PARAMETERIZATIONS = ("pixel", "fourier")


class Parameterization(Protocol):
    """What `inverter.loop.optimize` moves: one leaf tensor per batch element (each gets its own
    learning rate and optimiser state) and the differentiable image they make. Any class with
    these two is a parameterisation (the role of Lucent's `param_f`)."""

    leaves: list[torch.Tensor]

    def image(self) -> torch.Tensor:
        """(B, 3, H, W) in engine space, differentiable with respect to the leaves."""
        ...


class ImageParam:
    def __init__(self, init: torch.Tensor, kind: str = "pixel", decorrelate: bool = False, bounded: bool = False):
        if kind not in PARAMETERIZATIONS:
            raise ValueError(f"parameterisation must be one of {', '.join(PARAMETERIZATIONS)}, not {kind!r}")
        self.kind, self.decorrelate, self.bounded = kind, decorrelate, bounded
        self.shape = tuple(init.shape[-2:])
        device, dtype = init.device, init.dtype
        h, w = self.shape
        fy = torch.fft.fftfreq(h, device=device, dtype=dtype)[:, None]
        fx = torch.fft.rfftfreq(w, device=device, dtype=dtype)[None, :]
        self.scale = 1.0 / torch.maximum(torch.sqrt(fx * fx + fy * fy), torch.tensor(1.0 / max(h, w), dtype=dtype))
        self.color = COLOR_SQRT.to(device, dtype) / _COLOR_NORM
        raw = self._from_image(init.detach())
        self.leaves = [raw[b : b + 1].clone().requires_grad_(True) for b in range(raw.shape[0])]

    def _from_image(self, image: torch.Tensor) -> torch.Tensor:
        if self.bounded:  # engine space -> logits of valid pixels
            image = torch.logit(destandardise(image).clamp(1e-3, 1 - 1e-3))
        if self.decorrelate:
            image = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), image)
        if self.kind == "pixel":
            return image
        spectrum = torch.fft.rfft2(image, norm="ortho") / self.scale
        return torch.view_as_real(spectrum)

    def _to_image(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "fourier":
            raw = torch.fft.irfft2(torch.view_as_complex(raw.contiguous()) * self.scale, s=self.shape, norm="ortho")
        if self.decorrelate:
            raw = torch.einsum("ij,bjhw->bihw", self.color, raw)
        if self.bounded:  # pixels stay in (0, 1) however hard an objective pushes (Lucid's sigmoid)
            raw = standardise(torch.sigmoid(raw))
        return raw

    def image(self) -> torch.Tensor:
        """(B, 3, H, W) in engine space, differentiable with respect to the leaves."""
        return self._to_image(torch.cat(self.leaves))
