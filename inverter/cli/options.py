"""What the subcommands share: option groups built from the library's own fields and choices,
and the few steps every command takes (settings from flags, the network, the output folder)."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from converters.errors import UserError
from inverter.config import CHOICES, ConfigError, InversionConfig

PROG = "invert-onnx"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2."""

    def error(self, message: str):  # noqa: D401
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def size(text: str) -> tuple[int, int]:
    from converters.input_spec import parse_size

    return parse_size(text)


def floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"expected three comma-separated numbers, not {text!r}")
    return values


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per InversionConfig field, defaults, types and choices taken from the dataclass."""
    from inverter.presets import PRESETS

    group = parser.add_argument_group("inversion settings (InversionConfig)")
    for f in dataclasses.fields(InversionConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = floats3 if isinstance(f.default, tuple) else type(f.default)
        group.add_argument(flag, type=kind, default=None, choices=CHOICES.get(f.name),
                           help=f"(default: {f.default}, or the preset's)")
    group.add_argument("--preset", choices=list(PRESETS),
                       help="start from named settings; flags typed on top win. "
                            + "; ".join(f"{k}: {label}" for k, (_, label) in PRESETS.items()))


def add_input_spec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input preprocessing (overrides what the model records)")
    group.add_argument("--mean", type=floats3, help="per-channel mean in the network's channel order and scale")
    group.add_argument("--std", type=floats3, help="per-channel std")
    group.add_argument("--scale", type=float, help="pixel range the network expects: 1 or 255")
    group.add_argument("--channel-order", choices=["RGB", "BGR"])
    group.add_argument("--layout", choices=["NCHW", "NHWC"])
    group.add_argument("--size", type=size, default=None, metavar="H[,W]",
                       help="input size, for models whose size is dynamic")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-speedups", action="store_true",
                        help="plain graph: no channels-last, no Conv+BN folding, no in-place ReLU")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")


def add_output(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", type=Path, help=f"output folder (default: {default})")
    parser.add_argument("--force", action="store_true", help="write into an output folder that holds files")


def config_from(args) -> InversionConfig:
    """The preset (if any), then every flag the user typed on top of it."""
    from inverter.presets import preset

    base = preset(args.preset)[0] if getattr(args, "preset", None) else InversionConfig()
    typed = {f.name: getattr(args, f.name) for f in dataclasses.fields(InversionConfig)
             if getattr(args, f.name, None) is not None}
    return base.replace(**typed)


def split_weights(specs: list[str]) -> tuple[list[str], dict[str, float]]:
    """`--node conv3_1 --node fc6=0.1` -> names and per-node weights."""
    names, weights = [], {}
    for spec in specs:
        name, sep, weight = spec.rpartition("=")
        if sep:
            try:
                weights[name] = float(weight)
            except ValueError:
                raise ConfigError(f"node weight must be a number: {spec!r} (NAME=WEIGHT)") from None
            names.append(name)
        else:
            names.append(spec)
    return names, weights


SPEC_FLAGS = ("mean", "std", "scale", "channel_order", "layout")


def spec_overrides(args) -> dict:
    """The preprocessing flags the user typed (None for the others)."""
    return {k: getattr(args, k, None) for k in SPEC_FLAGS}


def speed_options(args) -> dict:
    """channels-last memory, Conv+BN folding inside a cut, in-place ReLU: on unless --no-speedups
    (measured with `python -m benchmarks.run`: -20% per iteration on VGG16-BN, -38% on ResNet-50)."""
    on = not getattr(args, "no_speedups", False)
    return {"channels_last": on, "fold_batchnorm": on, "inplace_relu": on}


def load_network(args, path: Path | None = None):
    """The model named on the command line, with any preprocessing overrides."""
    from converters import load
    from converters.input_spec import InputSpec, recorded_spec
    from converters.network.network import Network, read_onnx

    path = path or args.model
    overrides = spec_overrides(args)
    size_ = getattr(args, "size", None)
    if not any(v is not None for v in overrides.values()):
        return load(path, size=size_, **speed_options(args))
    model = read_onnx(path)
    base = recorded_spec(model) or InputSpec()
    spec = base.replace(**overrides, source="command line")
    return Network(model, input_spec=spec, size=size_, path=path, **speed_options(args))


def out_dir(args, default: Path | str) -> Path:
    from inverter.io.reports import prepare_out_dir

    return prepare_out_dir(args.out or Path(default), args.force)


def emit(args, summary: dict, line: str) -> None:
    """The command's one line, or its summary as JSON with --json."""
    print(json.dumps(summary, indent=2, default=str) if args.json else line)


def safe_stem(*names: str) -> str:
    return "+".join(str(n).replace("/", "_").strip("_") for n in names)[:80]


__all__ = ["PROG", "Parser", "UserError", "add_common", "add_config_options", "add_input_spec_options",
           "add_output", "config_from", "emit", "load_network", "out_dir", "size", "spec_overrides",
           "speed_options", "split_weights"]
