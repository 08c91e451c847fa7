"""The `invert-onnx` command line: one subcommand per method, each parse -> method -> writer -> one line."""
from inverter.cli.main import main

__all__ = ["main"]
