"""How fast is one inversion step at a node: the converted graph against native torch and onnxruntime.

Everything is timed with `torch.utils.benchmark` (`Timer.blocked_autorange`: enough runs per
block to beat the timer's resolution, the median over blocks) and tabulated with its `Compare`.

- step: what `optimize` repeats, minus regularisers and the optimiser step: the features at
  the node from an image in engine space, the normalised distance to a target, the backward
  pass to the image;
- forward: the features alone, without gradients.

Rows:
- converted: the `Network` (onnx2torch + torch.fx) cut at the node;
- speed options: the `Network` loaded with FAST_OPTIONS (channels_last, BatchNorm folded into
  the Conv before it, in-place ReLU);
- native, native channels_last: the torchvision module with the same seeded weights, cut at
  the same module path with torch.fx; the speed options' fair native counterpart runs in
  channels_last;
- onnxruntime (forward only): the ONNX graph cut at the node by `onnx.utils.Extractor`.

Every variant is checked to compute the converted node's tensor before it is timed: a
benchmark of a different computation raises.
"""
from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
import onnx.utils
import torch
from torch import fx, nn
from torch.utils import benchmark

from converters.errors import UserError
from converters.network.network import Network, load
from inverter.objectives import normalised_distance

log = logging.getLogger(__name__)

FAST_OPTIONS = {"channels_last": True, "fold_batchnorm": True, "inplace_relu": True}
TOLERANCE = 1e-3  # largest relative difference to the converted node that still counts as the same tensor
STEP, FORWARD = "step", "forward"


# ----------------------------------------------------------------------------- the cuts
def native_cut(module: nn.Module, network: Network, node: str) -> tuple[nn.Module, str]:
    """The native module cut at the module path that names `node` (its name or an alias), and that path."""
    target = network.resolve(node)
    modules = dict(module.named_modules())
    path = next((c for c in [node, *target.aliases] if c and c in modules and _resolves_to(network, c, target.name)),
                None)
    if path is None:
        raise UserError(f"no module of {type(module).__name__} matches node {node!r} "
                        f"(aliases: {', '.join(target.aliases) or 'none'})")

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return qualname == path or super().is_leaf_module(m, qualname)

    graph = Tracer().trace(module)
    hit = next(n for n in graph.nodes if n.op == "call_module" and n.target == path)
    for n in [n for n in graph.nodes if n.op == "output"]:
        graph.erase_node(n)
    graph.output(hit)
    cut = fx.GraphModule(module, graph)
    cut.graph.eliminate_dead_code()
    cut.recompile()
    cut.delete_all_unused_submodules()
    return _frozen(cut), path


def _resolves_to(network: Network, name: str, node_name: str) -> bool:
    try:
        return network.resolve(name).name == node_name
    except UserError:
        return False


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def onnx_cut(network: Network, node: str) -> onnx.ModelProto:
    """The network's ONNX graph from its input to the node's first output (onnx.utils.Extractor)."""
    output = network.resolve(node).outputs[0]
    model = onnx.shape_inference.infer_shapes(network.onnx_model)  # the Extractor needs every value's info
    return onnx.utils.Extractor(model).extract_model([network.input_name], [output])


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# ----------------------------------------------------------------------------- the timed functions
def _step(forward: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, target: torch.Tensor):
    def step():
        v.grad = None
        normalised_distance(forward(v), target).sum().backward()
    return step


def _no_grad(forward: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor):
    def run():
        with torch.no_grad():
            return forward(v)
    return run


def _ort_session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave the cores to torch
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@dataclass
class Variants:
    functions: dict[tuple[str, str], Callable[[], object]]  # (row, column) -> the timed function
    differences: dict[str, float]  # row -> relative difference of its forward to the converted node
    image: torch.Tensor  # what the steps differentiate (its .grad holds the last step's gradient)


def variants(network: Network, node: str, *, batch: int, seed: int, fast_net: Network | None,
             native_module: nn.Module | None, onnxruntime: bool) -> Variants:
    """The functions to time, each checked to compute the converted node's tensor."""
    name = network.resolve(node).name
    h, w = network.input_spec.size
    gen = torch.Generator().manual_seed(seed)
    image, original = torch.randn(batch, 3, h, w, generator=gen), torch.randn(batch, 3, h, w, generator=gen)
    converted = lambda v: network.from_standardised(v, [name])[0]  # noqa: E731
    with torch.no_grad():
        target, reference = converted(original), converted(image)
    v = image.clone().requires_grad_(True)
    forwards: dict[str, Callable] = {"converted": converted}
    if fast_net is not None:
        forwards["speed options"] = lambda v: fast_net.from_standardised(v, [name])[0]
    if native_module is not None:
        cut, _ = native_cut(_frozen(native_module), network, name)
        adapt = (lambda v: v) if network.input_spec.is_identity() else network.input_spec.adapt
        forwards["native"] = lambda v: cut(adapt(v))
        if fast_net is not None:
            cl = copy.deepcopy(cut).to(memory_format=torch.channels_last)
            forwards["native channels_last"] = lambda v: cl(adapt(v).contiguous(memory_format=torch.channels_last))
    differences, fns = {}, {}
    for row, forward in forwards.items():
        with torch.no_grad():
            differences[row] = relative_difference(forward(image), reference)
        fns[(row, STEP)] = _step(forward, v, target)
        fns[(row, FORWARD)] = _no_grad(forward, image)
    if onnxruntime:
        session = _ort_session(onnx_cut(network, name))
        ort_feed = {network.input_name: network.input_spec.adapt(image).numpy()}
        (out,) = session.run(None, ort_feed)
        differences["onnxruntime"] = relative_difference(torch.from_numpy(out), reference)
        fns[("onnxruntime", FORWARD)] = lambda: session.run(None, ort_feed)
    wrong = {row: d for row, d in differences.items() if not d <= TOLERANCE}
    if wrong:
        raise UserError(f"at {node}, these variants do not compute the converted tensor (relative difference "
                        f"{', '.join(f'{r} {d:.2g}' for r, d in wrong.items())}): not timing different computations")
    return Variants(fns, differences, v)


# ----------------------------------------------------------------------------- measuring
def model_file(model: str | Path, size: int | None, seed: int, workdir: Path) -> tuple[Path, str | None]:
    """An ONNX file for the model: the file itself, or a `models.zoo` architecture exported with seeded weights."""
    from models.zoo import ARCHITECTURES, export

    if str(model) in ARCHITECTURES:
        side = size or ARCHITECTURES[str(model)].size
        path = workdir / f"{model}_seed{seed}_{side}.onnx"
        if not path.is_file():
            log.info("exporting %s at %d px (seed %d) to %s", model, side, seed, path)
            export(str(model), path, seed=seed, size=side)
        return path, str(model)
    path = Path(model)
    if not path.is_file():
        raise UserError(f"{model} is neither an ONNX file nor a known architecture ({', '.join(ARCHITECTURES)})")
    return path, None


def bench_model(model: str | Path, node: str, *, size: int | None = None, batch: int = 1, seed: int = 0,
                min_run_time: float = 1.0, native: bool = True, native_module: nn.Module | None = None,
                fast: bool = True, onnxruntime: bool = True, workdir: str | Path | None = None) -> dict:
    """Time the step and the forward at one node of one model; a JSON-ready dict and the measurements.

    model: an ONNX file or a `models.zoo` architecture name (exported with seeded weights and
    rebuilt natively with the same seed). native_module: the native counterpart of an ONNX file.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path, arch = model_file(model, size, seed, Path(workdir) if workdir else Path(tmp))
        sized = {"size": (size, size)} if size else {}
        network = load(path, **sized)
        fast_net = load(path, **sized, **FAST_OPTIONS) if fast else None
    if native and native_module is None and arch is not None:
        from models.zoo import build

        native_module = build(arch, seed=seed)
    found = variants(network, node, batch=batch, seed=seed, fast_net=fast_net,
                     native_module=native_module if native else None, onnxruntime=onnxruntime)
    fns, differences = found.functions, found.differences
    h, w = network.input_spec.size
    label = f"{arch or path.name} @ {node} ({h}x{w}, batch {batch})"
    measurements = []
    for (row, column), fn in fns.items():
        fn()  # warm-up: builds the cut, the kernels' caches
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label, sub_label=row, description=column,
                                num_threads=torch.get_num_threads())
        measurements.append(timer.blocked_autorange(min_run_time=min_run_time))
    ms = {STEP: {}, FORWARD: {}}
    for (row, column), m in zip(fns, measurements):
        ms[column][row] = m.median * 1e3
    report = {"model": arch or str(path), "node": node, "resolved_node": network.resolve(node).name,
              "size": [h, w], "batch": batch, "threads": torch.get_num_threads(), "ms": ms,
              "max_relative_difference": differences, "ratios": _ratios(ms)}
    return {"report": report, "measurements": measurements}


def _ratios(ms: dict) -> dict:
    pairs = {"converted_over_native": (STEP, "converted", "native"),
             "speed_options_over_native": (STEP, "speed options", "native"),
             "speed_options_over_native_channels_last": (STEP, "speed options", "native channels_last"),
             "converted_over_onnxruntime_forward": (FORWARD, "converted", "onnxruntime")}
    return {k: ms[c][a] / ms[c][b] for k, (c, a, b) in pairs.items() if a in ms[c] and b in ms[c]}


def table(measurements: list[benchmark.Measurement]) -> str:
    """torch.utils.benchmark's table: one block per model, a row per variant, step and forward columns."""
    compare = benchmark.Compare(measurements)
    compare.trim_significant_figures()
    return str(compare)
