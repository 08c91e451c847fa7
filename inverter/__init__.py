"""The inversion engine, its objectives and regularisers, images, reports and the CLI."""
from inverter.config import ConfigError, InversionConfig
from inverter.engine import Result, invert, optimize

__all__ = ["ConfigError", "InversionConfig", "Result", "invert", "optimize"]
