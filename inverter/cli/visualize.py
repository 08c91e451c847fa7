"""Feature or class visualisation: maximise a channel, a neuron, a whole layer or a class logit."""
from __future__ import annotations

from pathlib import Path

from inverter.cli.options import (
    LOOP_FIELDS,
    add_common,
    add_config_options,
    add_input_spec_options,
    add_output,
    check_index,
    config_from,
    emit,
    finite_float,
    index,
    interrupted_exit,
    load_network,
    neuron_index,
    nonnegative_int,
    out_dir,
    positive_float_list,
    positive_int,
)
from inverter.param import PARAMETERIZATIONS
from inverter.presets import VISUALIZE_DEFAULTS


def add_arguments(p) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--node", help="node to visualise (default: the model's output, for --class)")
    p.add_argument("--channel", type=index)
    p.add_argument("--neuron", type=neuron_index, help="C or C,X,Y (default: centre)")
    p.add_argument("--class", dest="cls", type=index, help="class index (logit + L2 prior)")
    p.add_argument("--l2", type=finite_float, default=1e-4, help="L2 weight for --class")
    p.add_argument("--pool", type=nonnegative_int, default=0, help="max-pool the channel map by K first (lower frequencies)")
    p.add_argument("--param", choices=[p for p in PARAMETERIZATIONS], default="fourier")
    p.add_argument("--no-decorrelate", action="store_true", help="plain RGB instead of decorrelated colour")
    p.add_argument("--scales", type=positive_float_list, help="random zoom factors, e.g. 0.9,1,1.1")
    p.add_argument("--rotate", type=finite_float, default=0.0, help="random rotation up to +-DEG")
    p.add_argument("--batch", type=positive_int, default=1, help="images per run (seeds seed, seed+1, ...)")
    add_output(p, "runs/visualize_MODEL")
    add_common(p)
    add_config_options(p, only=LOOP_FIELDS + ("init_scale", "lambda_tv", "beta"), defaults=VISUALIZE_DEFAULTS)
    add_input_spec_options(p)


def run(args) -> int:
    from inverter.io.reports import write_visualization
    from inverter.methods.visualization import class_objective, visualize
    from inverter.objectives import channel, layer, neuron, tv

    network = load_network(args)
    node = args.node or network.output_names[0]
    network.resolve(node)
    if args.cls is not None:
        check_index(network, node, (args.cls,), "--class", flat=True)
        objective, what = class_objective(network, args.cls, node=args.node, lambda_l2=args.l2), f"class {args.cls}"
    elif args.neuron:
        check_index(network, node, args.neuron, "--neuron")
        objective, what = neuron(node, *args.neuron), f"{node} neuron {','.join(map(str, args.neuron))}"
    elif args.channel is not None:
        check_index(network, node, (args.channel,), "--channel")
        objective, what = channel(node, args.channel, pool=args.pool), f"{node} channel {args.channel}"
    else:
        objective, what = layer(node), f"{node} (whole layer)"
    config = config_from(args)
    objective = objective + config.lambda_tv * tv(config.beta)
    scales = tuple(args.scales) if args.scales else (1.0,)
    out = out_dir(args, Path("runs") / f"visualize_{args.model.stem}")
    pixels, run_ = visualize(network, objective, config, batch=args.batch, parameterization=args.param,
                             decorrelate=not args.no_decorrelate, scales=scales, degrees=args.rotate,
                             progress=not args.quiet)
    title = (f"{args.model.name}: {what} ({args.param}{', decorrelated' if not args.no_decorrelate else ''}, "
             f"{run_.iterations} it)")
    summary = write_visualization(pixels, run_, what, out, title, config)
    emit(args, summary, f"{what}: {run_.iterations} iterations in {run_.seconds:.1f} s -> {summary['figure']}")
    return interrupted_exit(run_.stopped, out) or 0
