"""Named settings. Every figure a study writes says which preset it used.

What comes from a source and what is our reading is said next to each value.
"""
from __future__ import annotations

from inverter.config import ConfigError, InversionConfig

PRESETS: dict[str, tuple[InversionConfig, str]] = {
    "default": (InversionConfig(), "invert-onnx defaults (measured in benchmarks/peers.py): Adam lr 0.1 (x0.1 at 3/4 of the run), 200 it, "
                                   "normalised priors, lambda_alpha 3.6e-3, lambda_TV 3e-3 x 0.3/5/30 by depth"),
    # The PyTorch inversion script this project started from (formerly the preset `seed`).
    # From its argparse: alpha 6, beta 2, lambda_alpha = lambda_tv = 1e-5, 200 epochs, SGD momentum 0.9,
    # lr x0.1 every 100 epochs. The initial lr is 1e2 as its authors' notes say (its argparse default
    # reads 1e-2 with the comment "1e2"; at 1e-2 the image never leaves grey: issue 15). Noise start,
    # std 0.1 in ImageNet-standardised units: our reading.
    "pytorch-script": (InversionConfig(optimizer="sgd", lr=1e2, momentum=0.9, iterations=200, decay_every=100, decay_at=(),
                                       decay_factor=0.1, lambda_alpha=1e-5, alpha=6.0, lambda_tv=1e-5, beta=2.0,
                                       priors="plain", tv_depth_scale=(), priors_by_response=False),
                       "the PyTorch seed script (argparse: SGD momentum 0.9, lr 1e2 per its authors' notes, "
                       "x0.1 every 100 it, 200 it, lambda_alpha = lambda_TV = 1e-5, alpha 6, beta 2)"),
    # Mahendran & Vedaldi (CVPR 2015), as their public code runs it (aravindhm/deep-goggle: core/invert_nn.m,
    # experiments/experiment_cnn.m). Theirs:
    #   energy  ||Phi - Phi0||^2 / ||Phi0||^2 + (lambda_TV / 2) TV_2(x) / x0_sigma^2
    #                                         + (lambda_L / 2) sum x^6 / x0_sigma^2,
    #   x0_sigma the norm of a typical image, lambda_L 8e-10 (0-255 units, mean subtracted), TVbeta 2, beta 6;
    #   step    m <- 0.9 m - lr x0_sigma^2 grad(energy); x <- x + m; lr 0.004 for 100 iterations, x0.1 for
    #           200, x0.01 for 100 (400 in all), momentum zeroed when lr changes;
    #   start   randn scaled to norm x0_sigma.
    # lambda_TV by depth: 0.5 conv1-2, 5 conv3-4, 50 conv5/fc on VGG16, as a public re-implementation of
    # their code records (frhrdr/deep_restoration; AlexNet in their code: 1 / 10 / 100).
    # Our reading, converted to this engine (x0_sigma^2 = H W B^2 with B = inverter.objectives.MV_B):
    #   lambda_TV / 2 / x0_sigma^2 = (lambda_TV / 84.5) / (H W V^2) with V = B / 6.5: 5 -> 0.0592 on our
    #   normalised TV, x (0.1, 1, 10) by depth; lambda_L / 2 * B^4 (B = 80 in 0-255 units) = 0.0164 on our
    #   normalised alpha-norm; lr x H W B^2 (lr_scales_with_area); the noise std B / sqrt(3) ~ 0.8 per
    #   element. torch's SGD multiplies the whole momentum buffer by the current lr, so a drop in lr takes
    #   effect at once, as their momentum reset makes it do.
    "mahendran-vedaldi": (InversionConfig(optimizer="sgd", lr=0.004, lr_scales_with_area=True, momentum=0.9,
                                          iterations=400, decay_at=(0.25, 0.75), decay_factor=0.1,
                                          lambda_alpha=0.0164, alpha=6.0, lambda_tv=5 / 84.5, beta=2.0,
                                          priors="normalised", tv_depth_scale=(0.1, 1.0, 10.0),
                                          init_scale=0.8, priors_by_response=False),
                          "Mahendran & Vedaldi 2015 as their code (deep-goggle) runs it: normalised energy, "
                          "lambda_TV 0.5/5/50 by depth, alpha 6, beta 2, SGD momentum 0.9 with the step scaled "
                          "by the image's squared norm, lr 0.004 then /10 at 100 and 300 of 400 iterations"),
}


def preset(name: str) -> tuple[InversionConfig, str]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


# The commands whose method weighs the plain TV sum (objective + lambda_tv * tv()), not the normalised prior of
# an inversion, start from the settings of the README figure each one made (scripts/figures.py), so a default
# means one thing: `invert-onnx visualize` as docs/feature_visualization.png, `style` as docs/style_transfer.png.
VISUALIZE_DEFAULTS = {"iterations": 100, "lr": 0.05, "jitter": 4, "lambda_tv": 1e-4}
STYLE_DEFAULTS = {"iterations": 150, "lr": 0.05, "lambda_tv": 1e-6}
STYLE_WEIGHT = 20.0  # the Gram terms against the content term
