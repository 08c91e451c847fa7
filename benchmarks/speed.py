"""How fast is one inversion step, against native PyTorch, onnxruntime and the GEMM rate?

The step is what `optimize` repeats, minus the extras: the features at the node from an
image in engine space (`network.features`), the normalised feature distance to a target,
and the backward pass to the image. Regularisers, jitter and the optimiser step are left out
(one Adam step on the image is timed apart: `adam_step_ms`).

Variants, timed interleaved (each round calls every variant once, in a fresh random order, after
warm-up) so that a noisy machine slows them alike; a ratio is the median over rounds of the
per-round ratio, and `*_best` values compare the fastest rounds:

- converted: the `Network` cut at the node (onnx2torch + torch.fx), `network.features`;
- native: the torchvision module with the same seeded weights, cut at the same point
  (`features[:k+1]`, ResNet stem + layers, else torch.fx with that module as a leaf), checked
  to give the same tensor; frozen like the Network (no weight gradients);
- fast: the `Network` loaded with the speed options (channels_last, BatchNorm folded into the
  Conv before it, in-place ReLU), and native_channels_last, its fair native counterpart;
- engine, engine_fast: `inverter.loop.optimize` with the default InversionConfig (Adam,
  alpha-norm, TV) on the converted / fast Network, per iteration (a call runs a few);
- converted_1_thread: the converted step with torch.set_num_threads(1) around it;
- converted_compiled: torch.compile of the cut, when asked for;
- onnxruntime_forward: the ONNX graph cut at the node (default graph optimisations, same
  thread count, no spinning), against converted_forward and native_forward (no_grad);
- full: the converted step up to the model's outputs: the cost of the cut against the whole;
- gemm: torch.mm of two n x n float32 matrices (2n^3 FLOPs), the machine's rate in the same
  rounds.

FLOPs follow `converters.network.flops` (a multiply-add = 2, batch 1); a step counts 2 x the forward
FLOPs (the backward to the image costs about one forward: a Conv's input gradient is a
transposed convolution of the same size, and no weight gradients are computed).
Peak memory: growth of the process' peak resident set (VmHWM) over one step, after handing
freed heap back (malloc_trim) and resetting the peak (/proc/self/clear_refs, Linux); None
where that is not allowed.
"""
from __future__ import annotations

import copy
import ctypes
import gc
import logging
import math
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import fx, nn

from converters.errors import UserError
from converters.network.flops import ancestors, flops_to, total_flops
from converters.network.names import NodeInfo
from converters.network.network import Network, load
from inverter.cli import memory as cpu
from inverter.objectives import normalised_distance

log = logging.getLogger(__name__)

GOALS = {
    "converted_over_native": "converted / native per iteration <= 1.05",
    "cut_cost": "cut/full time ratio <= 1.1 x cut/full FLOP ratio",
    "batch_scaling": "images/s at the largest batch (8) >= 2 x batch 1",
    "gemm_fraction": "achieved GFLOP/s >= 50% of the measured GEMM rate",
}
FAST_OPTIONS = {"channels_last": True, "fold_batchnorm": True, "inplace_relu": True}
RATIOS = {  # name: (numerator variant, denominator variant)
    "converted_over_native": ("converted", "native"),
    "fast_over_converted": ("fast", "converted"),
    "fast_over_native": ("fast", "native"),
    "native_channels_last_over_native": ("native_channels_last", "native"),
    "fast_over_native_channels_last": ("fast", "native_channels_last"),
    "compiled_over_converted": ("converted_compiled", "converted"),
    "one_thread_over_converted": ("converted_1_thread", "converted"),
    "engine_over_converted": ("engine", "converted"),
    "engine_fast_over_native": ("engine_fast", "native"),
    "time_cut_over_full": ("converted", "full"),
    "native_time_cut_over_full": ("native", "native_full"),
    "converted_forward_over_native_forward": ("converted_forward", "native_forward"),
    "converted_forward_over_onnxruntime": ("converted_forward", "onnxruntime_forward"),
    "native_forward_over_onnxruntime": ("native_forward", "onnxruntime_forward"),
}


# ----------------------------------------------------------------------------- measuring
def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call of each function: `repeats` rounds, each calling every function once in a
    fresh random order (so no variant always follows the same one and inherits its cache state)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    order = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repeats of a_i / b_i (a and b timed in the same round)."""
    return _median([x / y for x, y in zip(a, b) if y > 0])


def gemm_rate(n: int = 2048, repeats: int = 8) -> dict:
    """float32 torch.mm of two n x n matrices: best and median GFLOP/s (2 n^3 FLOPs a product)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    flops = 2 * n**3
    return {"n": n, "repeats": repeats, "best_gflops": flops / min(times) / 1e9,
            "median_gflops": flops / _median(times) / 1e9}


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb(fn: Callable[[], object]) -> float | None:
    """Growth of the peak resident set over one call of fn (after one warm-up call), in MB."""
    fn()
    _trim_heap()
    base = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return None
    fn()
    peak = _status_kb("VmHWM")
    if base is None or peak is None:
        return None
    return max(peak - base, 0) / 1024


# ----------------------------------------------------------------------------- the models
def native_cut(module: nn.Module, network: Network, node: str) -> tuple[nn.Module, str]:
    """The native module cut at the point of `node`, and how it was cut.

    The node's aliases give a module path of `module` that names the same ONNX node
    (`features.16`, `layer2.1`); VGG/AlexNet slice `features`, ResNets stack the stem and
    layers, anything else is traced with torch.fx with that module as a leaf and cut there.
    """
    target = network.resolve(node)
    modules = dict(module.named_modules())
    path = next((c for c in [node, *target.aliases] if c in modules and c
                 and _resolves_to(network, c, target.name)), None)
    if path is None:
        raise UserError(f"no module of {type(module).__name__} matches node {node!r} "
                        f"(aliases: {', '.join(target.aliases) or 'none'})")
    parts = path.split(".")
    children = list(module.named_children())
    if len(parts) == 2 and parts[0] == "features" and parts[1].isdigit() and children \
            and children[0][0] == "features" and isinstance(children[0][1], nn.Sequential):
        k = int(parts[1])  # VGG, AlexNet: `features` runs first, a Sequential
        return module.features[: k + 1], f"features[:{k + 1}]"
    stem = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    if all(hasattr(module, s) for s in stem) and parts[0] in stem:
        i = stem.index(parts[0])
        layers = [getattr(module, s) for s in stem[:i]]
        if len(parts) == 1:
            layers.append(getattr(module, parts[0]))
            how = "+".join(stem[: i + 1])
        elif len(parts) == 2 and parts[1].isdigit():
            b = int(parts[1])
            layers.append(getattr(module, parts[0])[: b + 1])
            how = "+".join(stem[:i] + (f"{parts[0]}[:{b + 1}]",))
        else:
            return _fx_cut(module, path), f"torch.fx cut at {path}"
        return nn.Sequential(*layers), how
    return _fx_cut(module, path), f"torch.fx cut at {path}"


def _resolves_to(network: Network, name: str, node_name: str) -> bool:
    try:
        return network.resolve(name).name == node_name
    except UserError:
        return False


def _fx_cut(module: nn.Module, path: str) -> fx.GraphModule:
    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return qualname == path or super().is_leaf_module(m, qualname)

    graph = Tracer().trace(module)
    hit = next(n for n in graph.nodes if n.op == "call_module" and n.target == path)
    for n in [n for n in graph.nodes if n.op == "output"]:
        graph.erase_node(n)
    graph.output(hit)
    graph.eliminate_dead_code()
    cut = fx.GraphModule(module, graph)
    cut.delete_all_unused_submodules()
    return cut


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def onnx_cut(network: Network, node: str) -> onnx.ModelProto:
    """The ONNX graph computing only what the node needs, with the node's tensor as output."""
    model = network.onnx_model
    target = network.resolve(node)
    keep = {n.name for n in ancestors(network, [target.name])}
    nodes = [n for n in model.graph.node if n.name in keep]
    used = {t for n in nodes for t in n.input}
    graph = onnx.helper.make_graph(
        nodes, f"{model.graph.name}_cut", [i for i in model.graph.input if i.name == network.input_name],
        [onnx.helper.make_tensor_value_info(target.outputs[0], onnx.TensorProto.FLOAT, None)],
        [t for t in model.graph.initializer if t.name in used])
    cut = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return cut


def _ort_session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle ORT threads would otherwise spin and steal the torch variants' cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often (the keyword arguments of `run_bench` and `bench_model`)."""

    batches: tuple[int, ...] = (1, 2, 4, 8)
    repeats: int = 10  # timed rounds; each round calls every variant once
    warmup: int = 2  # untimed rounds first
    seed: int = 0  # weights of architectures, images, round order
    native: bool = True  # the torchvision module cut at the same point
    onnxruntime: bool = True  # forward-only reference
    full: bool = True  # the step up to the model's outputs (cost of the cut)
    fast: bool = True  # the Network with FAST_OPTIONS, and native in channels_last
    memory: bool = True  # peak RSS growth over one step
    single_thread: bool = True  # the converted step with one torch thread
    engine_iterations: int = 5  # `optimize` iterations per timed call (0: no engine variant)
    compile: bool = False  # torch.compile of the cut (builds for a minute)
    gemm_n: int = 2048  # side of the torch.mm timed in the same rounds


# ----------------------------------------------------------------------------- the step
def _step(forward: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, target: torch.Tensor):
    """One inversion step without the extras: forward to the node, normalised distance, backward."""
    def step():
        v.grad = None
        normalised_distance(forward(v), target).sum().backward()
    return step


def _no_grad(forward: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor):
    def run():
        with torch.no_grad():
            return forward(v)
    return run


def _one_thread(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)
    return run


def _engine_run(network: Network, node: str, target: torch.Tensor, init: torch.Tensor, iterations: int):
    """`optimize` with the default InversionConfig (Adam, alpha-norm, TV) for a few iterations."""
    from inverter.config import InversionConfig
    from inverter.loop import optimize
    from inverter.methods.inversion import inversion_objective

    config = InversionConfig(iterations=iterations)
    objective = inversion_objective({node: target}, config)
    return lambda: optimize(network, objective, config, init, progress=False)


def _compiled_forward(network: Network, node: str):
    """torch.compile (inductor) of the cut graph, fed like `network.features`."""
    cut = torch.compile(network.cut((network.resolve(node).outputs[0],)))
    spec = network.input_spec
    identity = spec.is_identity()
    return lambda v: cut(v if identity else spec.adapt(v))[0]


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _adam_step_ms(image: torch.Tensor, repeats: int = 50) -> float:
    v = image.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=0.1)
    v.grad = torch.randn_like(v)
    opt.step()
    start = time.perf_counter()
    for _ in range(repeats):
        opt.step()
    return 1e3 * (time.perf_counter() - start) / repeats


def _summary(times: list[float]) -> dict:
    return {"median_ms": 1e3 * _median(times), "min_ms": 1e3 * min(times),
            "iqr_ms": 1e3 * (float(np.percentile(times, 75)) - float(np.percentile(times, 25))),
            "repeats": len(times)}


# ----------------------------------------------------------------------------- one model
def _model_file(model: str | Path, size: int | None, seed: int, workdir: Path) -> tuple[Path, str | None]:
    """An ONNX file for the model (exported from the zoo, seeded, for an architecture name)."""
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
        raise UserError(f"{model} is neither an ONNX file nor a known architecture "
                        f"({', '.join(ARCHITECTURES)})")
    return path, None


def _load(path: Path, size: tuple[int, int] | None, **options) -> Network:
    network = load(path, **options)
    if size and tuple(network.input_spec.size) != tuple(size):
        network = load(path, size=size, **options)
    return network


def bench_model(model: str | Path, node: str, *, size: int | None = None, workdir: str | Path | None = None,
                native_module: nn.Module | None = None, **options) -> dict:
    """Measure one model cut at one node, at one size (module docstring); a JSON-ready dict.

    model: an ONNX file or a `models.zoo` architecture name (exported with seeded weights and
    rebuilt natively with the same seed). native_module: the native counterpart of an ONNX file.
    options: the fields of `BenchOptions`.
    """
    opts = BenchOptions(**{k: tuple(v) if k == "batches" else v for k, v in options.items()})
    with tempfile.TemporaryDirectory() as tmp:
        path, arch = _model_file(model, size, opts.seed, Path(workdir) if workdir else Path(tmp))
        sized = (size, size) if size else None
        network = _load(path, sized)
        if opts.native and native_module is None and arch is not None:
            from models.zoo import build

            native_module = build(arch, seed=opts.seed)
        fast_net = _load(path, sized, **FAST_OPTIONS) if opts.fast else None
        report = _measure(network, fast_net, native_module if opts.native else None, node, opts)
    report["model"] = arch or str(path)
    return report


class _Variants:
    """The timed functions of one benchmark, built from the networks and the images."""

    def __init__(self, network: Network, node: NodeInfo, opts: BenchOptions):
        self.network, self.node, self.opts = network, node, opts
        h, w = network.input_spec.size
        gen = torch.Generator().manual_seed(opts.seed)
        batches = sorted(set(opts.batches) | {1})
        self.images = {b: torch.randn(b, 3, h, w, generator=gen) for b in batches}
        originals = {b: torch.randn(b, 3, h, w, generator=gen) for b in batches}
        self.originals = originals
        with torch.no_grad():
            self.targets = {b: self.features(network)(originals[b]) for b in batches}
        self.v = self.images[1].clone().requires_grad_(True)
        self.steps: dict[str, Callable] = {}
        self.forwards: dict[str, Callable] = {}
        self.info: dict = {}

    def features(self, net: Network, names: list[str] | None = None):
        names = names or [self.node.name]
        return lambda v: net.features(v, names)[0]

    def step(self, name: str, forward) -> None:
        self.steps[name] = _step(forward, self.v, self.targets[1])

    def add_converted(self) -> None:
        self.step("converted", self.features(self.network))
        self.forwards["converted_forward"] = _no_grad(self.features(self.network), self.images[1])
        if self.opts.single_thread and torch.get_num_threads() > 1:
            self.steps["converted_1_thread"] = _one_thread(self.steps["converted"])

    def add_native(self, module: nn.Module) -> nn.Module | None:
        """The native cut, checked against the converted node; None when they disagree."""
        whole = _frozen(module)
        cut, how = native_cut(whole, self.network, self.node.name)
        cut = _frozen(cut)
        spec = self.network.input_spec
        identity = spec.is_identity()
        feed = (lambda v: v) if identity else spec.adapt
        with torch.no_grad():
            diff = _relative_difference(cut(feed(self.images[1])), self.features(self.network)(self.images[1]))
        self.info["native"] = {"cut": how, "max_relative_difference": diff, "input_adapt": not identity}
        if diff > 1e-3:
            log.warning("native cut %s differs from the converted node by %.2g; not timed", how, diff)
            self.info["native"]["error"] = "outputs differ"
            return None
        self.step("native", lambda v: cut(feed(v)))
        self.forwards["native_forward"] = _no_grad(lambda v: cut(feed(v)), self.images[1])
        if self.opts.full and len(self.network.output_names) == 1:
            with torch.no_grad():
                target = whole(feed(self.originals[1]))
            self.steps["native_full"] = _step(lambda v: whole(feed(v)), self.v, target)
        if self.opts.fast:
            cl = _frozen(copy.deepcopy(cut)).to(memory_format=torch.channels_last)
            self.step("native_channels_last", lambda v: cl(feed(v).contiguous(memory_format=torch.channels_last)))
        return cut

    def add_fast(self, fast_net: Network) -> None:
        self.step("fast", self.features(fast_net))
        self.forwards["fast_forward"] = _no_grad(self.features(fast_net), self.images[1])
        with torch.no_grad():
            diff = _relative_difference(self.features(fast_net)(self.images[1]),
                                        self.features(self.network)(self.images[1]))
        self.info["fast"] = {"options": dict(FAST_OPTIONS), "max_relative_difference": diff}

    def add_full(self) -> None:
        outputs = list(self.network.output_names)
        with torch.no_grad():
            target = self.features(self.network, outputs)(self.originals[1])
        self.steps["full"] = _step(self.features(self.network, outputs), self.v, target)

    def add_onnxruntime(self) -> None:
        session = _ort_session(onnx_cut(self.network, self.node.name), torch.get_num_threads())
        feed = {self.network.input_name: self.network.input_spec.adapt(self.images[1]).numpy()}
        self.forwards["onnxruntime_forward"] = lambda: session.run(None, feed)

    def add_engine(self, fast_net: Network | None) -> None:
        n = self.opts.engine_iterations
        self.steps["engine"] = _engine_run(self.network, self.node.name, self.targets[1], self.images[1], n)
        if fast_net is not None:
            self.steps["engine_fast"] = _engine_run(fast_net, self.node.name, self.targets[1], self.images[1], n)

    def add_compiled(self) -> None:
        forward = _compiled_forward(self.network, self.node.name)
        self.step("converted_compiled", forward)
        start = time.perf_counter()
        self.steps["converted_compiled"]()  # builds the kernels
        self.info["compile_seconds"] = time.perf_counter() - start


def _measure(network: Network, fast_net: Network | None, native_module: nn.Module | None, node: str,
             opts: BenchOptions) -> dict:
    target = network.resolve(node)
    forward_flops = flops_to(network, target.name)
    full_flops = total_flops(network)
    report: dict = {
        "node": node, "resolved_node": target.name, "op_type": target.op_type,
        "size": list(network.input_spec.size), "output_shape": list(target.shape or []),
        "threads": torch.get_num_threads(), "options": asdict(opts),
        "flops_forward": forward_flops, "flops_full_forward": full_flops, "flops_step": 2 * forward_flops,
        "flop_ratio_cut_over_full": forward_flops / full_flops if full_flops else float("nan"),
    }
    variants = _Variants(network, target, opts)
    variants.add_converted()
    if native_module is not None:
        variants.add_native(native_module)
    if fast_net is not None:
        variants.add_fast(fast_net)
    if opts.full:
        variants.add_full()
    if opts.onnxruntime:
        variants.add_onnxruntime()
    if opts.engine_iterations:
        variants.add_engine(fast_net)
    if opts.compile:
        variants.add_compiled()
    report.update(variants.info)

    gen = torch.Generator().manual_seed(opts.seed)
    gemm_a, gemm_b = (torch.randn(opts.gemm_n, opts.gemm_n, generator=gen) for _ in range(2))
    timed = {**variants.steps, **variants.forwards, "gemm": lambda: torch.mm(gemm_a, gemm_b)}
    report["load_average_before"] = list(os.getloadavg())
    times = interleaved(timed, opts.repeats, opts.warmup, seed=opts.seed)
    report["load_average_after"] = list(os.getloadavg())
    for name in ("engine", "engine_fast"):  # per iteration
        if name in times:
            times[name] = [t / opts.engine_iterations for t in times[name]]
    report["times"] = {k: _summary(t) for k, t in times.items()}
    report["raw_seconds"] = times
    _ratios(report, times)
    _throughput(report, times, forward_flops, opts.gemm_n)
    nets = {"converted": network, **({"fast": fast_net} if fast_net is not None else {})}
    report["batch_scaling"] = _batch_scaling(nets, target.name, variants.images, variants.targets, opts.batches,
                                             max(2, opts.repeats // 2), min(opts.warmup, 1), opts.seed)
    if opts.memory:
        report["peak_memory_mb"] = {k: peak_memory_mb(variants.steps[k]) for k in ("converted", "native", "fast")
                                    if k in variants.steps}
    report["adam_step_ms"] = _adam_step_ms(variants.images[1])
    report["goals"] = _goals(report)
    return report


def _ratios(report: dict, times: dict[str, list[float]]) -> None:
    ratios, best = {}, {}
    for key, (a, b) in RATIOS.items():
        if a in times and b in times:
            ratios[key] = paired_ratio(times[a], times[b])
            best[key] = min(times[a]) / min(times[b])
    for r in (ratios, best):
        for prefix in ("", "native_"):
            if f"{prefix}time_cut_over_full" in r:
                r[f"{prefix}cut_cost_over_flop_ratio"] = r[f"{prefix}time_cut_over_full"] / \
                    report["flop_ratio_cut_over_full"]
    report["ratios"], report["ratios_best"] = ratios, best


STEP_VARIANTS = ("converted", "native", "fast", "native_channels_last", "engine", "engine_fast",
                 "converted_1_thread", "converted_compiled")
FORWARD_VARIANTS = ("converted_forward", "native_forward", "fast_forward", "onnxruntime_forward")


def _throughput(report: dict, times: dict[str, list[float]], forward_flops: int, gemm_n: int) -> None:
    """GFLOP/s of each variant, the GEMM rate of the same rounds, and their ratio."""
    work = {**{k: 2 * forward_flops for k in STEP_VARIANTS if k in times},
            **{k: forward_flops for k in FORWARD_VARIANTS if k in times}}
    gemm_flops = 2 * gemm_n**3
    report["gflops"] = {k: work[k] / _median(times[k]) / 1e9 for k in work}
    report["gflops_best"] = {k: work[k] / min(times[k]) / 1e9 for k in work}
    report["gemm"] = {"n": gemm_n, "median_gflops": gemm_flops / _median(times["gemm"]) / 1e9,
                      "best_gflops": gemm_flops / min(times["gemm"]) / 1e9}
    # per round: (work / t_variant) / (GEMM FLOPs / t_gemm), then the median over rounds
    report["gemm_fraction"] = {k: (work[k] / gemm_flops) * paired_ratio(times["gemm"], times[k]) for k in work}
    report["gemm_fraction_best"] = {k: report["gflops_best"][k] / report["gemm"]["best_gflops"] for k in work}


def _batch_scaling(networks: dict[str, Network], node: str, images, targets, batches, repeats, warmup,
                   seed: int) -> dict:
    fns = {}
    for name, net in networks.items():
        for b in batches:
            v = images[b].clone().requires_grad_(True)
            fns[f"{name}@{b}"] = _step(lambda x, net=net: net.features(x, [node])[0], v, targets[b])
    times = interleaved(fns, repeats, warmup, seed=seed)
    out: dict = {}
    for name in networks:
        rows = {}
        for b in batches:
            t = times[f"{name}@{b}"]
            rows[str(b)] = {"median_ms": 1e3 * _median(t), "min_ms": 1e3 * min(t),
                            "images_per_s": b / _median(t), "images_per_s_best": b / min(t)}
        first, last = str(min(batches)), str(max(batches))
        out[name] = {"batches": rows,
                     "speedup_largest_over_smallest": rows[last]["images_per_s"] / rows[first]["images_per_s"],
                     "speedup_best": rows[last]["images_per_s_best"] / rows[first]["images_per_s_best"]}
    return out


def _goals(report: dict) -> dict:
    """Each goal: value from medians (per-round ratios), `best` from the fastest rounds."""
    ratios, best, goals = report["ratios"], report.get("ratios_best", {}), {}

    def goal(name, value, best_value, target, at_most):
        met = value <= target if at_most else value >= target
        goals[name] = {"value": value, "best": best_value, "target": target,
                       "rule": ("<= " if at_most else ">= ") + str(target), "met": bool(met)}

    if "converted_over_native" in ratios:
        goal("converted_over_native", ratios["converted_over_native"], best.get("converted_over_native"), 1.05, True)
    if "cut_cost_over_flop_ratio" in ratios:
        goal("cut_cost", ratios["cut_cost_over_flop_ratio"], best.get("cut_cost_over_flop_ratio"), 1.1, True)
    for name, scaling in report.get("batch_scaling", {}).items():
        if len(scaling["batches"]) > 1:
            goal(f"batch_scaling_{name}", scaling["speedup_largest_over_smallest"], scaling["speedup_best"],
                 2.0, False)
    for name in ("converted", "fast"):
        if name in report.get("gemm_fraction", {}):
            goal(f"gemm_fraction_{name}", report["gemm_fraction"][name],
                 report["gemm_fraction_best"][name], 0.5, False)
    return goals


# ----------------------------------------------------------------------------- the whole run
def run_bench(models: list[tuple] | str | Path, node: str | None = None, *,
              sizes: list[int] | tuple[int, ...] | None = None, gemm_repeats: int = 8, threads: int | None = None,
              keep_freed_memory: bool = False, workdir: str | Path | None = None, **options) -> dict:
    """Benchmark the inversion step of one model (`model, node`) or several.

    models: an ONNX file or a `models.zoo` architecture name (exported with seeded random
    weights; the native variant is then that torchvision module with the same weights), or a
    list of (model, node) or (model, node, size) tuples.
    sizes: input sides (None: the architecture's or the file's own size); a tuple's size wins.
    threads: torch threads; keep_freed_memory: `inverter.cli.memory.keep_freed_memory()` first.
    options: the fields of `BenchOptions` (batches, repeats, warmup, seed, native, ...).
    Returns a JSON-ready dict: machine and settings, conventions, standalone GEMM rate, goals,
    and one result per (model, node, size); `format_table` renders it.
    """
    BenchOptions(**{k: tuple(v) if k == "batches" else v for k, v in options.items()})  # early errors
    if threads:
        torch.set_num_threads(threads)
    if keep_freed_memory:
        cpu.keep_freed_memory()
    settings = cpu.describe()
    items = [(models, node)] if isinstance(models, (str, Path)) else [tuple(m) for m in models]
    runs = []
    for item in items:
        if len(item) < 2 or item[1] is None:
            raise UserError(f"give the node to benchmark for {item[0]} (--node NAME)")
        for size in ([item[2]] if len(item) > 2 else (sizes or [None])):
            runs.append((item[0], item[1], size))
    gemm_n = options.get("gemm_n", BenchOptions.gemm_n)
    gemm_before = gemm_rate(gemm_n, gemm_repeats)
    results = []
    for model, name, size in runs:
        log.info("benchmarking %s at %s, size %s", model, name, size)
        results.append(bench_model(model, name, size=size, workdir=workdir, **options))
        gc.collect()
    gemm_after = gemm_rate(gemm_n, gemm_repeats)
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "onnxruntime": _ort_version(), "settings": settings,
                    "load_average_after": list(os.getloadavg())},
        "conventions": {
            "step": "features at the node + normalised feature distance + backward to the image; "
                    "no regularisers, jitter or optimiser step (engine: optimize() per iteration; "
                    "adam_step_ms apart)",
            "flops": "a multiply-add = 2 FLOPs, bias and elementwise ops 1 per output element, BN 2, "
                     "pooling kernel size per output (converters.network.flops); batch 1",
            "step_flops": "2 x forward FLOPs (input-gradient backward = one more forward's worth)",
            "ratios": "median over rounds of per-round ratios, variants in a random order each round; "
                      "*_best: ratio of the fastest rounds",
            "memory": "peak RSS growth over one step (VmHWM reset via /proc/self/clear_refs after malloc_trim)",
            "gemm": f"torch.mm {gemm_n}x{gemm_n} float32 timed in the same rounds as the variants "
                    "(gemm_fraction: median per-round ratio of achieved to GEMM GFLOP/s); standalone best "
                    f"of {gemm_repeats} before and after the run",
        },
        "gemm": {"before": gemm_before, "after": gemm_after,
                 "best_gflops": max(gemm_before["best_gflops"], gemm_after["best_gflops"])},
        "goals": GOALS,
        "results": results,
    }


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return None


# ----------------------------------------------------------------------------- the table
def _fmt(value, spec: str = ".1f", missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def _name(r: dict) -> str:
    return Path(str(r["model"])).stem if str(r["model"]).endswith(".onnx") else str(r["model"])


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def format_table(report: dict) -> str:
    """Markdown: times, ratios, throughput against GEMM, batch scaling, goals (medians; best in brackets)."""
    results = report["results"]

    def ms(r, k):
        t = r["times"].get(k)
        return f"{t['median_ms']:.1f} ({t['min_ms']:.1f})" if t else "–"

    def ratio(r, k, spec=".3f"):
        return f"{_fmt(r['ratios'].get(k), spec)} ({_fmt(r['ratios_best'].get(k), spec)})" \
            if k in r["ratios"] else "–"

    def pct(r, k):
        if k not in r.get("gemm_fraction", {}):
            return "–"
        return f"{100 * r['gemm_fraction'][k]:.0f}% ({100 * r['gemm_fraction_best'][k]:.0f}%)"

    settings = report["machine"].get("settings", {})
    lines = [f"torch {report['machine']['torch']}, {report['machine']['threads']} threads, OMP_WAIT_POLICY "
             f"{settings.get('omp_wait_policy', '?')}, keep_freed_memory {settings.get('keep_freed_memory', '?')}, "
             f"load average {_fmt((settings.get('load_average') or [None])[0], '.2f')} at start; standalone GEMM "
             f"best {report['gemm']['best_gflops']:.0f} GFLOP/s.", "",
             "Per-iteration ms at batch 1: median (fastest round); step = forward + backward to the image.", ""]
    variants = ["converted", "native", "fast", "native_channels_last", "engine", "engine_fast",
                "converted_1_thread", "converted_compiled",
                "full", "native_full", "converted_forward", "native_forward", "fast_forward", "onnxruntime_forward"]
    shown = [v for v in variants if any(v in r["times"] for r in results)]
    lines += _table(["model", "node", "size", "fwd GFLOP"] + [v.replace("_", " ") for v in shown],
                    [[_name(r), r["node"], str(r["size"][0]), f"{r['flops_forward'] / 1e9:.2f}"]
                     + [ms(r, v) for v in shown] for r in results])
    lines += ["", "Ratios: median of per-round ratios (ratio of fastest rounds).", ""]
    keys = ["converted_over_native", "fast_over_native", "fast_over_native_channels_last", "engine_over_converted",
            "engine_fast_over_native",
            "native_channels_last_over_native", "one_thread_over_converted", "compiled_over_converted",
            "converted_forward_over_onnxruntime",
            "native_forward_over_onnxruntime", "time_cut_over_full", "native_time_cut_over_full"]
    keys = [k for k in keys if any(k in r["ratios"] for r in results)]
    lines += _table(["model", "node"] + [k.replace("_over_", " / ").replace("_", " ") for k in keys]
                    + ["cut/full FLOP", "cut cost ÷ FLOP ratio", "native cut cost ÷ FLOP ratio"],
                    [[_name(r), r["node"]] + [ratio(r, k) for k in keys]
                     + [f"{r['flop_ratio_cut_over_full']:.3f}", ratio(r, "cut_cost_over_flop_ratio"),
                        ratio(r, "native_cut_cost_over_flop_ratio")]
                     for r in results])
    lines += ["", "Throughput: step GFLOP/s = 2 x forward FLOPs / median time; GEMM = torch.mm timed in the "
              "same rounds; % GEMM = median per-round ratio (fastest rounds). Peak memory: RSS growth over one step.",
              ""]
    lines += _table(["model", "node", "GEMM GFLOP/s", "converted GFLOP/s", "converted % GEMM", "fast GFLOP/s",
                     "fast % GEMM", "ORT fwd GFLOP/s", "peak MB converted / native / fast", "Adam step ms"],
                    [[_name(r), r["node"], f"{r['gemm']['median_gflops']:.0f} ({r['gemm']['best_gflops']:.0f})",
                      _fmt(r["gflops"].get("converted")), pct(r, "converted"), _fmt(r["gflops"].get("fast")),
                      pct(r, "fast"), _fmt(r["gflops"].get("onnxruntime_forward")),
                      " / ".join(_fmt(r.get("peak_memory_mb", {}).get(k), ".0f")
                                 for k in ("converted", "native", "fast")),
                      f"{r['adam_step_ms']:.2f}"] for r in results])
    batches = _all_batches(report)
    if batches:
        lines += ["", "Batch scaling: images/s from the median step (fastest round).", ""]
        rows = []
        for r in results:
            for name, sc in r.get("batch_scaling", {}).items():
                rows_b = sc["batches"]
                cells = [f"{rows_b[str(b)]['images_per_s']:.2f} ({rows_b[str(b)]['images_per_s_best']:.2f})"
                         if str(b) in rows_b else "–" for b in batches]
                rows.append([_name(r), r["node"], name] + cells
                            + [f"{sc['speedup_largest_over_smallest']:.2f}× ({sc['speedup_best']:.2f}×)"])
        lines += _table(["model", "node", "variant"] + [f"batch {b}" for b in batches] + ["largest / smallest"], rows)
    lines += ["", "Goals (value from medians; best rounds in brackets).", ""]
    lines += _table(["model", "node", "goal", "value", "rule", "met"],
                    [[_name(r), r["node"], name, f"{g['value']:.3f} ({_fmt(g.get('best'), '.3f')})", g["rule"],
                      "yes" if g["met"] else "no"] for r in results for name, g in r["goals"].items()])
    return "\n".join(lines)


def _all_batches(report: dict) -> list[int]:
    found = {int(b) for r in report["results"] for s in r.get("batch_scaling", {}).values() for b in s["batches"]}
    return sorted(found)
