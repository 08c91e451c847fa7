"""Named settings. Every figure a study writes says which preset it used."""
from __future__ import annotations

from inverter.config import ConfigError, InversionConfig

PRESETS: dict[str, tuple[InversionConfig, str]] = {
    "default": (InversionConfig(), "invert-onnx defaults: Adam, lr 0.1, 200 it, lambda_alpha 1e-8, lambda_TV 5e-7"),
    # The seed scripts users bring: SGD with momentum and a step decay, equal small priors.
    "seed": (InversionConfig(optimizer="sgd", lr=1e-2, momentum=0.9, iterations=200, decay_every=100,
                             decay_factor=0.1, lambda_alpha=1e-5, alpha=6.0, lambda_tv=1e-5, beta=2.0),
             "seed script: SGD momentum 0.9, lr 1e-2, x0.1 every 100 it, lambda_alpha = lambda_TV = 1e-5, alpha 6, beta 2"),
    # Our reading of Mahendran & Vedaldi (2015) sec. 3: momentum 0.9, a learning rate divided by
    # ten along the run, alpha = 6, beta = 2, a few hundred iterations.
    "mahendran-vedaldi": (InversionConfig(optimizer="sgd", lr=1e-2, momentum=0.9, iterations=300, decay_every=100,
                                          decay_factor=0.1, lambda_alpha=1e-8, alpha=6.0, lambda_tv=5e-7, beta=2.0),
                          "Mahendran & Vedaldi schedule (our reading): SGD momentum 0.9, lr /10 every 100 it, 300 it, alpha 6, beta 2"),
}


def preset(name: str) -> tuple[InversionConfig, str]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
