"""Export a Caffe, TensorFlow/Keras or PyTorch model to ONNX, then load it back and check it.

Formats: .prototxt (+ --weights .caffemodel), .keras/.h5/SavedModel/.pb/.tflite, TorchScript .pt,
state_dict .pth (+ --arch); or --arch NAME alone for a model of the zoo.
"""
from __future__ import annotations

from pathlib import Path

from inverter.cli.options import add_common, add_input_spec_options, config_value, emit, spec_overrides


def add_arguments(p) -> None:
    p.add_argument("source", nargs="?", type=Path, help="the model (omit with --arch for a zoo model)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--weights", type=Path, help="the .caffemodel of a .prototxt")
    p.add_argument("--arch", help="architecture of a state_dict: a zoo model (vgg16_hed, ...) or package.module:Class "
                   "(your own code, imported by name)")
    p.add_argument("--seed", type=config_value("seed", int), default=0, help="seed of random weights for --arch without weights")
    p.add_argument("--inputs", nargs="+", help="input tensor names (frozen TensorFlow graphs)")
    p.add_argument("--outputs", nargs="+", help="output tensor names (frozen TensorFlow graphs), or Caffe layer names: only the layers they need convert")
    add_common(p)
    add_input_spec_options(p)


def run(args) -> int:
    from converters.frontends.atomic_output import atomic_output

    with atomic_output(args.output, [args.source, args.weights]) as tmp:  # replaced only once the check passes
        summary, line = _convert(args, tmp)
    summary["onnx"] = str(args.output)
    emit(args, summary, f"{args.output}: {line}")
    return 0


def _convert(args, output) -> tuple[dict, str]:
    from converters import load, to_onnx
    from converters.input_spec import InputSpec
    from inverter.config import ConfigError

    overrides = spec_overrides(args)
    size = args.size
    if args.arch and ":" in args.arch:  # package.module:Class, the user's own code imported by name
        from converters.frontends.pytorch import architecture_from_name

        if args.source is None:
            raise ConfigError(f"--arch {args.arch} needs the state_dict file to load into it")
        spec = InputSpec().replace(**overrides) if any(v is not None for v in overrides.values()) else None
        out = to_onnx(args.source, output, architecture=architecture_from_name(args.arch), size=size,
                      input_spec=spec)
    elif args.arch:
        from models.zoo import ARCHITECTURES, build

        if args.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown --arch {args.arch!r}; known: {', '.join(ARCHITECTURES)}")
        arch = ARCHITECTURES[args.arch]
        spec = arch.spec.replace(**overrides)
        size = size or (arch.size, arch.size)
        if args.source is None:
            from converters.frontends.pytorch import export_module

            out = export_module(build(args.arch, seed=args.seed), output, size=size, input_spec=spec)
        else:
            out = to_onnx(args.source, output, architecture=build(args.arch, seed=args.seed),
                          size=size, input_spec=spec)
    elif args.source is None:
        raise ConfigError("give a model to convert, or --arch NAME for a model of the zoo")
    else:
        from converters import detect_framework

        base = InputSpec()
        if detect_framework(args.source) == "caffe":  # flags refine Caffe's BGR [0, 255] convention
            from converters.frontends.caffe.convert import CAFFE_SPEC

            base = CAFFE_SPEC
        spec = base.replace(**overrides) if any(v is not None for v in overrides.values()) else None
        out = to_onnx(args.source, output, weights=args.weights, size=size, input_spec=spec,
                      inputs=args.inputs, outputs=args.outputs)
    gb = args.max_memory
    network = load(out, size=size, max_memory=gb * 2**30 if gb is not None else None)
    parity = network.check_parity()
    spec = network.input_spec
    summary = {"onnx": str(out), "nodes": len(network.nodes), "input": network.describe()["input"],
               "parity_vs_onnxruntime": parity.max_error}
    return summary, (f"{len(network.nodes)} nodes, input {spec.layout} {spec.size[0]}x{spec.size[1]} "
                     f"{spec.colour}; torch graph vs onnxruntime: max relative error {parity.max_error:.2e}")
