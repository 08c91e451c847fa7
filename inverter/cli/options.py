"""What the subcommands share: option groups built from the library's own fields and choices,
and the few steps every command takes (settings from flags, the network, the output folder)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
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


class BadValue(argparse.ArgumentTypeError):
    """A flag's value refused while parsing: argparse names the flag, Parser.error makes it one line, exit 2."""


def _number(text: str, kind=float, what: str = "a number"):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise BadValue(f"expected {what}, not {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise BadValue(f"expected a finite number, not {text!r}")
    return value


def finite_float(text: str) -> float:
    return _number(text)


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise BadValue(f"expected a number > 0, not {text!r}")
    return value


def _whole_number(text: str, minimum: int, noun: str = "a whole number", why: str = "") -> int:
    value = _number(text, int, "a whole number")
    if value < minimum:
        raise BadValue(f"expected {noun} >= {minimum}, not {text!r}{why}")
    return value


def index(text: str) -> int:
    """A channel, class or target index: a whole number >= 0 (the model bounds it when loaded)."""
    return _whole_number(text, 0, "an index", " (negative indices are not accepted)")


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def nonnegative_int(text: str) -> int:
    return _whole_number(text, 0)


def float_list(text: str) -> list[float]:
    """`0.9,1,1.1` -> finite floats."""
    values = [_number(v.strip(), what="comma-separated numbers") for v in text.split(",")]
    if not values:
        raise BadValue(f"expected comma-separated numbers, not {text!r}")
    return values


def floats3(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers, one per input channel (the count is checked against the model)."""
    return tuple(float_list(text))


def neuron_index(text: str) -> tuple[int, ...]:
    """`C` or `C,X,Y`: whole numbers >= 0."""
    parts = text.split(",")
    if len(parts) not in (1, 3):
        raise BadValue(f"--neuron takes C or C,X,Y (whole numbers), not {text!r}")
    return tuple(index(p.strip()) for p in parts)


def check_index(network, node: str, values: tuple[int, ...], flag: str, flat: bool = False) -> None:
    """Refuse a channel (C), neuron (C, X, Y) or class index (flat: over all scores) the node does not have,
    before any work."""
    shape = network.resolve(node).shape
    if not shape:
        return
    if flat:
        limits = (math.prod(shape[1:]),)
    else:
        limits = (shape[1], *(shape[3:4] + shape[2:3] if len(shape) == 4 else ()))[:len(values)]
        if len(values) > len(limits):
            raise ConfigError(f"{flag} {','.join(map(str, values))}: node {node!r} has shape "
                              f"{'x'.join(map(str, shape))}; give the channel only")
    for value, limit, what in zip(values, limits, ("channel" if not flat else "class", "x", "y")):
        if value >= limit:
            raise ConfigError(f"{flag}: {what} {value} is out of range; node {node!r} has {limit} "
                              f"({'x'.join(map(str, shape))}), so use 0..{limit - 1}")


def positive_float_list(text: str) -> list[float]:
    values = float_list(text)
    if min(values) <= 0:
        raise BadValue(f"expected numbers > 0, not {text!r}")
    return values


def positive_floats3(text: str) -> tuple[float, ...]:
    values = floats3(text)
    if min(values) <= 0:
        raise BadValue(f"expected numbers > 0 (one per input channel), not {text!r}")
    return values


BOOLEANS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def config_value(name: str, kind: type):
    """The argparse type of an InversionConfig field: parsed, then checked by InversionConfig.validate
    (finite, in range) at once, so a bad value stops before any model is read."""
    def parse(text: str):
        if kind is bool:
            if text.lower() not in BOOLEANS:
                raise BadValue(f"expected yes or no, not {text!r}")
            value = BOOLEANS[text.lower()]
        elif kind in (int, float):
            value = _number(text, kind, "a whole number" if kind is int else "a number")
        elif kind is tuple:  # tv_depth_scale 0.3,5,30; decay_at 0.25,0.75
            value = tuple(float_list(text))
        else:
            value = text
        try:
            InversionConfig(**{name: value})
        except ConfigError as exc:
            raise BadValue(str(exc)) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


# the optimisation loop's own settings: every command that optimises reads these
LOOP_FIELDS = ("optimizer", "lr", "momentum", "lr_scales_with_area", "iterations", "decay_factor", "decay_every",
               "decay_at", "jitter", "seed", "device", "dtype")


def add_config_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None,
                       defaults: dict | None = None) -> None:
    """One flag per InversionConfig field, defaults, types and choices taken from the dataclass.

    only: the fields this command reads (default: all, and --preset); a flag a command would
    ignore is not offered, so typing it is an error instead of a silent no-op.
    defaults: the command's own defaults where its method gives a field another meaning (visualize and
    style weight the plain TV sum, not the normalised prior: lambda_tv 1e-4 and 1e-6, not 3e-3)."""
    defaults = defaults or {}
    from inverter.presets import PRESETS

    group = parser.add_argument_group("settings (InversionConfig)")
    for f in dataclasses.fields(InversionConfig):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, type=config_value(f.name, type(f.default)), default=defaults.get(f.name),
                           choices=CHOICES.get(f.name),
                           help=f"(default: {defaults.get(f.name, f.default)}" + (", or the preset's)" if only is None else ")"))
    if only is None:
        group.add_argument("--preset", choices=list(PRESETS),
                           help="start from named settings; flags typed on top win. "
                                + "; ".join(f"{k}: {label}" for k, (_, label) in PRESETS.items()))


def add_input_spec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input preprocessing (overrides what the model records)")
    group.add_argument("--mean", type=floats3, help="per-channel mean in the network's channel order and scale")
    group.add_argument("--std", type=positive_floats3, help="per-channel std")
    group.add_argument("--scale", type=positive_float, help="pixel range the network expects: 1 or 255")
    group.add_argument("--channel-order", choices=["RGB", "BGR"])
    group.add_argument("--layout", choices=["NCHW", "NHWC"])
    group.add_argument("--input", dest="input_name", metavar="NAME",
                       help="the graph input to invert, for a model with several (default: the first image-shaped "
                            "one; the others are fed zeros)")
    group.add_argument("--size", type=size, default=None, metavar="H[,W]",
                       help="input size, for models whose size is dynamic")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-speedups", action="store_true",
                        help="plain graph: no channels-last, no Conv+BN folding, no in-place ReLU")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    parser.add_argument("--max-memory", type=positive_float, metavar="GB",
                        help="memory a model may need at its input size (default: half the physical memory)")


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
            if not (math.isfinite(weights[name]) and weights[name] >= 0):
                raise ConfigError(f"node weight must be a finite number >= 0: {spec!r} (NAME=WEIGHT)")
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
    gb = getattr(args, "max_memory", None)
    return {"channels_last": on, "fold_batchnorm": on, "inplace_relu": on,
            "max_memory": gb * 2**30 if gb is not None else None}


def load_network(args, path: Path | None = None, notes: bool = True):
    """The model named on the command line, with any preprocessing overrides. notes: say on stderr what
    was assumed in reading it (a guessed preprocessing, quantized weights made float, ...); `invert`
    puts them in its own output instead."""
    import sys

    from converters import load
    from converters.input_spec import MetadataError, recorded_spec
    from converters.network.network import Network, detected_spec, read_onnx

    path = path or args.model
    overrides = spec_overrides(args)
    size_ = getattr(args, "size", None)
    input_name = getattr(args, "input_name", None)
    def build(size_):
        if not any(v is not None for v in overrides.values()):
            return load(path, size=size_, input_name=input_name, **speed_options(args))
        model = read_onnx(path, speed_options(args)["max_memory"])
        try:
            base, ignored = recorded_spec(model), None
        except MetadataError as exc:  # the flags replace it whole: nothing of it is half-applied
            base, ignored = None, f"ignored the malformed metadata ({exc.reason}); the flags apply to the defaults"
        base = base or detected_spec(model, input_name)  # keeps the graph's layout and channels
        spec = base.replace(**overrides, source="command line", confidence="known")
        network = Network(model, input_spec=spec, size=size_, path=path, input_name=input_name,
                          **speed_options(args))
        if ignored:
            network.notes.append(ignored)
        return network

    from converters.errors import ModelError

    try:
        network = build(size_)
    except ModelError as exc:
        image = image_size(args)
        if size_ is not None or image is None or "input size is dynamic" not in str(exc):
            raise
        # a dynamic model takes the image's own size, rounded to a stride CNNs take
        size_ = tuple(max(32, round(v / 32) * 32) for v in image)
        print(f"note: {Path(path).name}: the input size is dynamic: using the image's {image[0]}x{image[1]} "
              f"rounded to a multiple of 32, {size_[0]}x{size_[1]} (set it with --size)", file=sys.stderr)
        network = build(size_)
    if notes:
        for line in assumptions(network):
            print(f"note: {Path(path).name}: {line}", file=sys.stderr)
    return network


def image_size(args) -> tuple[int, int] | None:
    """(H, W) of the first --image on the command line, read from its header; None without one."""
    images = getattr(args, "image", None)
    first = images[0] if isinstance(images, list) and images else images
    if not first:
        return None
    try:
        from PIL import Image

        with Image.open(first) as im:
            return im.size[1], im.size[0]
    except (OSError, ValueError):
        return None  # the image's own loader says what is wrong with it


def assumptions(network) -> list[str]:
    """What the user should know about how the file was read: a guessed or calibrated preprocessing,
    and the notes of the loader (quantized weights made float, inputs fixed, nodes not converted)."""
    spec = network.input_spec
    lines = list(network.notes)
    chosen = (f"{spec.colour} [0, {spec.scale:g}], mean {[round(v, 4) for v in spec.mean]}, "
              f"std {[round(v, 4) for v in spec.std]}")
    flags = "set --scale/--mean/--std/--channel-order if it differs"
    if spec.guessed:
        lines.insert(0, f"the model records no preprocessing; assuming {chosen} (a guess: {flags})")
    elif spec.source.startswith("calibrated"):
        lines.insert(0, f"the model records no preprocessing; {spec.source.replace('calibrated: ', 'calibrated ')}: "
                        f"{chosen} ({flags})")
    return lines


def out_dir(args, default: Path | str) -> Path:
    from inverter.io.reports import prepare_out_dir

    return prepare_out_dir(args.out or Path(default), args.force)


RECEIVED: list[int] = []  # the signals (SIGTERM, SIGHUP) that interrupted this command (`main` handles them)


def interrupted() -> str:
    """'interrupted', or 'interrupted by SIGTERM' when a signal other than Ctrl-C's did it."""
    import signal

    return f"interrupted by {signal.Signals(RECEIVED[-1]).name}" if RECEIVED else "interrupted"


def interrupted_exit(stopped: str, out) -> int | None:
    """130 with one line when the run was interrupted (its partial results, marked so, are in `out`)."""
    if stopped != "interrupted":
        return None
    import sys

    print(f"{PROG}: {interrupted()}; the partial results (marked \"stopped\": \"interrupted\") are in {out}",
          file=sys.stderr)
    return 130


def emit(args, summary: dict, line: str) -> None:
    """The command's one line, or its summary as JSON with --json."""
    from converters.network.safe_names import printable

    # model names in the line are untrusted: control characters shown escaped (JSON escapes its own)
    print(json.dumps(summary, indent=2, default=str) if args.json
          else "\n".join(printable(part) for part in line.split("\n")))


def safe_stem(*names: str) -> str:
    return "+".join(str(n).replace("/", "_").strip("_") for n in names)[:80]


__all__ = ["LOOP_FIELDS", "PROG", "Parser", "UserError", "add_common", "add_config_options", "add_input_spec_options",
           "add_output", "config_from", "emit", "load_network", "out_dir", "size", "spec_overrides",
           "speed_options", "split_weights"]
