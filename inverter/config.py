"""`InversionConfig`: every knob of the seed scripts, shared by the CLI, the API and sweeps."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from converters.errors import UserError


class ConfigError(UserError):
    """A setting out of range."""


OPTIMIZERS = ("adam", "sgd")
INITS = ("noise", "zeros", "image")
PRIORS = ("plain", "normalised")
DTYPES = ("float32", "float64")
CHOICES = {"optimizer": OPTIMIZERS, "init": INITS, "dtype": DTYPES, "priors": PRIORS}  # the CLI offers these
# generous bounds: far past any useful setting, short of overflow (1e300 * a loss is inf)
MAX_LR = 1e30  # a huge finite rate is a legitimate way to make a run diverge (tests do); inf is not
MAX_LAMBDA = 1e6
MAX_EXPONENT = 100.0
MAX_INIT_SCALE = 1e3
MAX_ITERATIONS = 10**7
_DEVICE = re.compile(r"(cpu|mps|cuda(:\d+)?)")


def check_device(device: str) -> None:
    """`cpu`, `cuda`, `cuda:N` or `mps`, and present on this machine (else ConfigError)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    if device == "cpu":
        return
    import torch

    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device mps is not available on this machine; use --device cpu")
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device} is not available: this torch sees no CUDA GPU; use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {device} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")


@dataclass
class InversionConfig:
    optimizer: str = "adam"  # adam | sgd (momentum, Nesterov off)
    lr: float = 0.1  # in ImageNet-standardised pixel units
    momentum: float = 0.9  # sgd only
    # Mahendran & Vedaldi's step: lr is multiplied by x0_sigma^2 = H W B^2 (the squared norm of a typical
    # image, inverter.objectives.MV_B), so one lr carries across image sizes for SGD on normalised losses
    lr_scales_with_area: bool = False
    iterations: int = 200
    decay_factor: float = 0.1  # lr *= decay_factor every decay_every iterations, or at each of decay_at
    decay_every: int = 0  # 0: the decay_at schedule
    # fractions of the run at which lr *= decay_factor (0.75: iteration 150 of 200); decay_every > 0 replaces it
    decay_at: tuple = (0.75,)
    # Defaults measured by benchmarks/peers.py (issue 15): normalised priors, lambda_TV by depth, lr x0.1 at
    # iteration 150. The old defaults (plain priors, lambda_alpha 1e-8, lambda_TV 5e-7, ~ normalised 3.6e-3 /
    # 1.2e-3 at 224 px) matched features best but left saturated high-frequency colour at conv3_1 and deeper;
    # lambda_TV x5 at conv3-4 and x10 at conv5 over the first normalised defaults, and the late decay, are what
    # a sweep over 10 photos at 224 px on a GPU picked (docs/quality/224/): the smallest TV that beats the
    # peers' SSIM at every node while keeping the feature error below theirs.
    lambda_alpha: float = 3.6e-3  # weight of the alpha-norm (normalised: / (H W B^alpha); plain: sum over pixels)
    alpha: float = 6.0
    lambda_tv: float = 3e-3  # weight of sum ((dx)^2 + (dy)^2)^(beta/2) (normalised: / (H W V^beta))
    beta: float = 2.0
    # plain: lambda * sum over pixels; normalised: Mahendran & Vedaldi's R_alpha / (H W B^alpha) and
    # R_TV / (H W V^beta), so lambdas carry across image sizes (inverter.objectives.MV_B)
    priors: str = "normalised"
    # lambda_tv is multiplied by these for shallow / middle / deep nodes (downsampling 1-2 / 4-8 /
    # >= 16: VGG conv1-2 / conv3-4 / conv5, fc); () for lambda_tv everywhere
    tv_depth_scale: tuple = (0.3, 5.0, 30.0)
    # issue 19: both priors x min(1, s / 0.5), s = a flat image's normalised feature error at the node (how
    # strongly the node responds to the image at all; VGG16's nodes 0.76-0.96, unchanged). A node that
    # barely responds (an OCR net's deep node: 0.018) gets weaker priors instead of a flat grey result.
    priors_by_response: bool = True
    jitter: int = 0  # random roll of up to this many pixels per iteration
    init: str = "noise"  # noise | zeros | image (start from the original; a sanity check)
    init_scale: float = 0.1  # std of the noise init, standardised units
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"  # float64: slower, but batch and single runs agree to rounding

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        floats = ("lr", "momentum", "decay_factor", "lambda_alpha", "alpha", "lambda_tv", "beta", "init_scale")
        for name in floats:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, not {value!r}")
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}"),
            (0 < self.lr <= MAX_LR, f"lr must be in (0, {MAX_LR:g}], not {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), not {self.momentum}"),
            (isinstance(self.iterations, int) and 0 <= self.iterations <= MAX_ITERATIONS,
             f"iterations must be a whole number in [0, {MAX_ITERATIONS}], not {self.iterations}"),
            (0 < self.decay_factor <= 1, f"decay_factor must be in (0, 1], not {self.decay_factor}"),
            (self.decay_every >= 0, f"decay_every must be >= 0, not {self.decay_every}"),
            (isinstance(self.lr_scales_with_area, bool), f"lr_scales_with_area must be yes or no, not "
                                                         f"{self.lr_scales_with_area!r}"),
            (isinstance(self.priors_by_response, bool), f"priors_by_response must be yes or no, not "
                                                        f"{self.priors_by_response!r}"),
            (all(isinstance(v, (int, float)) and 0 < v < 1 for v in self.decay_at)
             and list(self.decay_at) == sorted(set(self.decay_at)),
             f"decay_at takes increasing fractions of the run in (0, 1), not {self.decay_at}"),
            (0 <= self.lambda_alpha <= MAX_LAMBDA and 0 <= self.lambda_tv <= MAX_LAMBDA,
             f"lambda_alpha and lambda_tv must be in [0, {MAX_LAMBDA:g}], not {self.lambda_alpha:g} and "
             f"{self.lambda_tv:g}"),
            (0 < self.alpha <= MAX_EXPONENT and 0 < self.beta <= MAX_EXPONENT,
             f"alpha and beta must be in (0, {MAX_EXPONENT:g}], not {self.alpha:g} and {self.beta:g}"),
            (self.priors in PRIORS, f"priors must be one of {', '.join(PRIORS)}, not {self.priors!r}"),
            (len(self.tv_depth_scale) in (0, 3) and all(v >= 0 for v in self.tv_depth_scale),
             "tv_depth_scale takes three weights >= 0 (shallow, middle, deep), or none"),
            (self.jitter >= 0, f"jitter must be >= 0, not {self.jitter}"),
            (self.init in INITS, f"init must be one of {', '.join(INITS)}, not {self.init!r}"),
            (0 <= self.init_scale <= MAX_INIT_SCALE, f"init_scale must be in [0, {MAX_INIT_SCALE:g}], "
                                                     f"not {self.init_scale:g}"),
            (isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"seed must be a whole number in [0, 2**63), "
                                                                   f"not {self.seed}"),
            (self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_device(self.device)

    def replace(self, **changes) -> "InversionConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
