"""Named settings. Every figure a study writes says which preset it used.

What comes from a source and what is our reading is said next to each value.
"""
from __future__ import annotations

from inverter.config import ConfigError, InversionConfig

PRESETS: dict[str, tuple[InversionConfig, str]] = {
    "default": (InversionConfig(), "invert-onnx defaults (measured in benchmarks/peers.py): Adam lr 0.1, 200 it, normalised "
                                   "priors, lambda_alpha 3.6e-3, lambda_TV 3e-3 x 0.3/1/3 by depth"),
    # The PyTorch inversion script this project started from (formerly the preset `seed`).
    # From its argparse: alpha 6, beta 2, lambda_alpha = lambda_tv = 1e-5, 200 epochs, SGD momentum 0.9,
    # lr x0.1 every 100 epochs. The initial lr is 1e2 as its authors' notes say (its argparse default
    # reads 1e-2 with the comment "1e2"; at 1e-2 the image never leaves grey: issue 15). Noise start,
    # std 0.1 in ImageNet-standardised units: our reading.
    "pytorch-script": (InversionConfig(optimizer="sgd", lr=1e2, momentum=0.9, iterations=200, decay_every=100,
                                       decay_factor=0.1, lambda_alpha=1e-5, alpha=6.0, lambda_tv=1e-5, beta=2.0,
                                       priors="plain", tv_depth_scale=()),
                       "the PyTorch seed script (argparse: SGD momentum 0.9, lr 1e2 per its authors' notes, "
                       "x0.1 every 100 it, 200 it, lambda_alpha = lambda_TV = 1e-5, alpha 6, beta 2)"),
    # Mahendran & Vedaldi (CVPR 2015). Theirs: alpha 6, beta 2; priors normalised as
    # R_alpha / (H W B^alpha) and R_TV / (H W V^beta) with B the typical norm of a pixel vector
    # (B ~ 80 in mean-subtracted 0-255 units in their code) and V = B / 6.5; lambda_TV by layer group
    # as a public re-implementation records for VGG16 (0.5 conv1-2, 5 conv3-4, 50 conv5/fc);
    # SGD with momentum 0.9 and the learning rate divided by ten along the run.
    # Our reading: B converted to our ImageNet-standardised space (inverter.objectives.MV_B);
    # the layer group read from the node's downsampling (1-2: conv1-2, 4-8: conv3-4, >= 16: conv5/fc);
    # lambda_alpha 1e-5 on the normalised alpha-norm; lr 50 (the normalised TV at lambda 5 makes momentum
    # SGD unstable above lr ~ 2 (1 + 0.9) H W V^2 / (16 lambda), ~100 at 224 px: below ~160 px this
    # preset diverges and the loop keeps the last finite image); the decay at 150 of 200 iterations;
    # 200 iterations, the budget the peers get.
    "mahendran-vedaldi": (InversionConfig(optimizer="sgd", lr=50.0, momentum=0.9, iterations=200, decay_every=150,
                                          decay_factor=0.1, lambda_alpha=1e-5, alpha=6.0, lambda_tv=5.0, beta=2.0,
                                          priors="normalised", tv_depth_scale=(0.1, 1.0, 10.0)),
                          "Mahendran & Vedaldi 2015: normalised priors (B, V = B/6.5), lambda_TV 0.5/5/50 by depth, "
                          "alpha 6, beta 2, SGD momentum 0.9, lr /10 along the run (lr and decay point: our reading)"),
}


def preset(name: str) -> tuple[InversionConfig, str]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
