"""The inversion engine, its objectives and regularisers, images, reports and the CLI."""
from inverter.config import ConfigError, InversionConfig
from inverter.loop import optimize
from inverter.methods.inversion import InversionResult, invert

__all__ = ["ConfigError", "InversionConfig", "InversionResult", "invert", "optimize"]
