"""How fast is one inversion step, against native PyTorch, onnxruntime and the FLOP limit?

The step is what `optimize` repeats: the features at the node from an image in engine space
(`network.features`), the normalised feature distance to a target, and the backward pass to
the image. Regularisers, jitter and the optimiser step are left out (Adam on one image is
measured apart, `adam_step_ms`: a fraction of a millisecond).

Variants, timed interleaved (a, b, c, a, b, c, ... in a rotating order, after warm-up) so
that a noisy machine slows all of them alike; ratios are medians of the per-repeat ratios:

- converted: the `Network` cut at the node (onnx2torch + torch.fx), `network.features`;
- native: the torchvision module with the same seeded weights, cut at the same point
  (`features[:k+1]`, ResNet stem + layers, else torch.fx with that module as a leaf), checked
  to give the same tensor;
- fast: the `Network` loaded with the speed options (channels_last, BatchNorm folded into the
  Conv before it, in-place ReLU in the cut), when asked for;
- onnxruntime: forward only, the ONNX graph cut at the node, against the converted forward
  (no_grad);
- full: the converted step up to the model's outputs, for the cost of cutting.

FLOPs follow `converters.flops` (a multiply-add = 2); the step counts as 2 x the forward
FLOPs (the backward to the image costs a forward again: each Conv's input gradient is a
transposed convolution of the same size, and no weight gradients are computed). GEMM rate:
the best of several `torch.mm` of two n x n float32 matrices, 2n^3 FLOPs each.
Peak memory: growth of the process' peak resident set (VmHWM) over one step, after returning
freed heap to the system (malloc_trim) and resetting the peak (/proc/self/clear_refs); None
where the kernel does not allow that.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import fx, nn

from converters.errors import UserError
from converters.flops import ancestors, flops_to, total_flops
from converters.onnx_torch import Network, load
from converters.spec import InputSpec
from inverter.objectives import normalised_distance

log = logging.getLogger(__name__)

GOALS = {
    "converted_over_native": "converted / native per iteration <= 1.05",
    "cut_cost": "cut/full time ratio <= 1.1 x cut/full FLOP ratio",
    "batch_scaling": "images/s at the largest batch (8) >= 2 x batch 1",
    "gemm_fraction": "achieved GFLOP/s >= 50% of the measured GEMM rate",
}
FAST_OPTIONS = {"channels_last": True, "fold_batchnorm": True, "inplace_relu": True}


# ----------------------------------------------------------------------------- measuring
def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn (rotating order) `repeats` times."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
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


def _is_identity(spec: InputSpec) -> bool:
    a, b = spec._affine("cpu", torch.float64)
    return spec.layout == "NCHW" and spec.channel_order == "RGB" and \
        bool(torch.allclose(a, torch.ones_like(a))) and bool(torch.allclose(b, torch.zeros_like(b), atol=1e-12))


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


# ----------------------------------------------------------------------------- one model
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


def _summary(times: list[float]) -> dict:
    return {"median_ms": 1e3 * _median(times), "min_ms": 1e3 * min(times),
            "iqr_ms": 1e3 * (float(np.percentile(times, 75)) - float(np.percentile(times, 25))),
            "repeats": len(times)}


def _load_model(model: str | Path, size: int | None, seed: int, workdir: Path) -> tuple[Path, str | None]:
    """An ONNX file for the model (exported from the zoo for an architecture name)."""
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


def bench_model(model: str | Path, node: str, *, size: int | None = None, batches=(1, 2, 4, 8),
                repeats: int = 10, warmup: int = 2, seed: int = 0, native: bool = True,
                onnxruntime: bool = True, full: bool = True, memory: bool = True, fast: bool = True,
                compile: bool = False, gemm_gflops: float | None = None,
                workdir: str | Path | None = None) -> dict:
    """Measure one model at one size (see the module docstring); a JSON-ready dict."""
    with tempfile.TemporaryDirectory() as tmp:
        path, arch = _load_model(model, size, seed, Path(workdir) if workdir else Path(tmp))
        sized = (size, size) if size else None
        network = _load(path, sized)
        return _bench_loaded(network, arch, node, batches=batches, repeats=repeats, warmup=warmup,
                             seed=seed, native=native and arch is not None, onnxruntime=onnxruntime, full=full,
                             memory=memory, fast=fast, compile=compile, gemm_gflops=gemm_gflops, path=path,
                             sized=sized)


def _load(path: Path, size: tuple[int, int] | None, **options) -> Network:
    network = load(path, **options)
    if size and tuple(network.input_spec.size) != tuple(size):
        network = load(path, size=size, **options)
    return network


def _bench_loaded(network: Network, arch: str | None, node: str, *, batches, repeats, warmup, seed, native,
                  onnxruntime, full, memory, fast, compile, gemm_gflops, path, sized) -> dict:
    target_node = network.resolve(node)
    h, w = network.input_spec.size
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(seed)
    images = {b: torch.randn(b, 3, h, w, generator=gen) for b in sorted(set(batches) | {1})}
    originals = {b: torch.randn(b, 3, h, w, generator=gen) for b in images}
    forward_flops = flops_to(network, target_node.name)
    full_flops = total_flops(network)
    report: dict = {
        "model": arch or str(path), "node": node, "resolved_node": target_node.name,
        "op_type": target_node.op_type, "size": [h, w], "output_shape": list(target_node.shape or []),
        "threads": threads, "flops_forward": forward_flops, "flops_full_forward": full_flops,
        "flop_ratio_cut_over_full": forward_flops / full_flops if full_flops else float("nan"),
        "flops_step": 2 * forward_flops,
    }

    def converted_forward(net: Network, names: list[str]):
        return lambda v: net.features(v, names)[0]

    with torch.no_grad():
        targets = {b: network.features(originals[b], [target_node.name])[0] for b in images}
    v1 = images[1].clone().requires_grad_(True)
    fns: dict[str, Callable] = {"converted": _step(converted_forward(network, [target_node.name]), v1, targets[1])}
    forward_fns: dict[str, Callable] = {}

    native_module = None
    if native:
        from models.zoo import build

        cut, how = native_cut(_frozen(build(arch, seed=seed)), network, target_node.name)
        native_module = _frozen(cut)
        identity = _is_identity(network.input_spec)
        spec = network.input_spec
        native_forward = (lambda v: native_module(v)) if identity else (lambda v: native_module(spec.adapt(v)))
        with torch.no_grad():
            a = native_forward(images[1])
            b = network.features(images[1], [target_node.name])[0]
            diff = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        report["native"] = {"cut": how, "max_relative_difference": diff, "input_adapt": not identity}
        if diff > 1e-3:
            log.warning("native cut %s differs from the converted node by %.2g; not timed", how, diff)
            report["native"]["error"] = "outputs differ"
        else:
            fns["native"] = _step(native_forward, v1, targets[1])

    fast_net = None
    if fast:
        fast_net = _load(path, sized, **FAST_OPTIONS)
        fns["fast"] = _step(converted_forward(fast_net, [target_node.name]), v1, targets[1])
        if native_module is not None and "native" in fns:
            native_cl = _frozen(_copy_module(native_module)).to(memory_format=torch.channels_last)
            fns["native_channels_last"] = _step(
                lambda v: native_cl(v.contiguous(memory_format=torch.channels_last)), v1, targets[1])
        with torch.no_grad():
            b = network.features(images[1], [target_node.name])[0]
            diff = float((fast_net.features(images[1], [target_node.name])[0] - b).abs().max()
                         / b.abs().max().clamp_min(1e-12))
        report["fast"] = {"options": dict(FAST_OPTIONS), "max_relative_difference": diff}
    if full:
        outputs = list(network.output_names)
        with torch.no_grad():
            full_target = network.features(originals[1], outputs)[0]
        fns["full"] = _step(converted_forward(network, outputs), v1, full_target)
    if onnxruntime:
        session = _ort_session(onnx_cut(network, target_node.name), threads)
        feed = {network.input_name: network.input_spec.adapt(images[1]).numpy()}
        forward_fns["onnxruntime_forward"] = lambda: session.run(None, feed)
        forward_fns["converted_forward"] = _no_grad(converted_forward(network, [target_node.name]), images[1])
        if "native" in fns:
            forward_fns["native_forward"] = _no_grad(native_forward, images[1])
    if compile:
        fns["converted_compiled"], report["compile_seconds"] = _compiled_step(
            network, target_node.name, v1, targets[1])

    times = interleaved({**fns, **forward_fns}, repeats, warmup)
    report["times"] = {k: _summary(t) for k, t in times.items()}
    report["raw_seconds"] = times
    conv = times["converted"]
    ratios: dict[str, float] = {}
    for other in ("native", "fast", "native_channels_last", "converted_compiled"):
        if other in times:
            ratios[f"converted_over_{other}"] = paired_ratio(conv, times[other])
    if "fast" in times and "native" in times:
        ratios["fast_over_native"] = paired_ratio(times["fast"], times["native"])
    if "native_channels_last" in times:
        ratios["fast_over_native_channels_last"] = paired_ratio(times["fast"], times["native_channels_last"])
    if "full" in times:
        ratios["time_cut_over_full"] = paired_ratio(conv, times["full"])
        ratios["cut_cost_over_flop_ratio"] = ratios["time_cut_over_full"] / report["flop_ratio_cut_over_full"]
    if "onnxruntime_forward" in times:
        ratios["converted_forward_over_onnxruntime"] = paired_ratio(times["converted_forward"],
                                                                    times["onnxruntime_forward"])
        if "native_forward" in times:
            ratios["native_forward_over_onnxruntime"] = paired_ratio(times["native_forward"],
                                                                     times["onnxruntime_forward"])
    report["ratios"] = ratios
    step_flops = 2 * forward_flops
    report["gflops"] = {k: step_flops / _median(times[k]) / 1e9
                        for k in ("converted", "native", "fast", "native_channels_last", "converted_compiled")
                        if k in times}
    for k in ("converted_forward", "native_forward", "onnxruntime_forward"):
        if k in times:
            report["gflops"][k] = forward_flops / _median(times[k]) / 1e9
    if gemm_gflops:
        report["gemm_fraction"] = {k: g / gemm_gflops for k, g in report["gflops"].items()}

    report["batch_scaling"] = _batch_scaling(
        {"converted": network, **({"fast": fast_net} if fast_net is not None else {})},
        target_node.name, images, targets, batches, max(2, repeats // 2), min(warmup, 1))
    if memory:
        report["peak_memory_mb"] = {k: peak_memory_mb(fns[k]) for k in ("converted", "native", "fast") if k in fns}
    report["adam_step_ms"] = _adam_step_ms(images[1])
    report["goals"] = _goals(report)
    return report


def _copy_module(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def _compiled_step(network: Network, node: str, v: torch.Tensor, target: torch.Tensor):
    """torch.compile of the cut graph (inductor): the step and the first call's seconds."""
    cut = network.cut((network.resolve(node).outputs[0],))
    compiled = torch.compile(cut)
    spec = network.input_spec
    step = _step(lambda x: compiled(spec.adapt(x))[0], v, target)
    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def _batch_scaling(networks: dict[str, Network], node: str, images, targets, batches, repeats, warmup) -> dict:
    fns, vs = {}, {}
    for name, net in networks.items():
        for b in batches:
            vs[(name, b)] = images[b].clone().requires_grad_(True)
            fns[f"{name}@{b}"] = _step(lambda v, net=net: net.features(v, [node])[0], vs[(name, b)], targets[b])
    times = interleaved(fns, repeats, warmup)
    out: dict = {}
    for name in networks:
        rows = {}
        for b in batches:
            t = _median(times[f"{name}@{b}"])
            rows[str(b)] = {"median_ms": 1e3 * t, "images_per_s": b / t}
        first, last = str(min(batches)), str(max(batches))
        out[name] = {"batches": rows, "speedup_largest_over_smallest":
                     rows[last]["images_per_s"] / rows[first]["images_per_s"]}
    return out


def _adam_step_ms(image: torch.Tensor, repeats: int = 50) -> float:
    v = image.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=0.1)
    v.grad = torch.randn_like(v)
    opt.step()
    start = time.perf_counter()
    for _ in range(repeats):
        opt.step()
    return 1e3 * (time.perf_counter() - start) / repeats


def _goals(report: dict) -> dict:
    ratios, goals = report["ratios"], {}
    if "converted_over_native" in ratios:
        value = ratios["converted_over_native"]
        goals["converted_over_native"] = {"value": value, "target": 1.05, "met": value <= 1.05}
    if "cut_cost_over_flop_ratio" in ratios:
        value = ratios["cut_cost_over_flop_ratio"]
        goals["cut_cost"] = {"value": value, "target": 1.1, "met": value <= 1.1}
    scaling = report.get("batch_scaling", {}).get("converted")
    if scaling and len(scaling["batches"]) > 1:
        value = scaling["speedup_largest_over_smallest"]
        goals["batch_scaling"] = {"value": value, "target": 2.0, "met": value >= 2.0}
    for name in ("converted", "fast"):
        if name in report.get("gemm_fraction", {}):
            value = report["gemm_fraction"][name]
            goals[f"gemm_fraction_{name}"] = {"value": value, "target": 0.5, "met": value >= 0.5}
    return goals


# ----------------------------------------------------------------------------- the whole run
def run_bench(models: list[tuple] | str | Path, node: str | None = None, *,
              sizes: list[int] | tuple[int, ...] | None = None, batches=(1, 2, 4, 8), repeats: int = 10,
              warmup: int = 2, seed: int = 0, native: bool = True, onnxruntime: bool = True,
              full: bool = True, memory: bool = True, fast: bool = True, compile: bool = False,
              gemm_n: int = 2048, gemm_repeats: int = 8, threads: int | None = None,
              workdir: str | Path | None = None) -> dict:
    """Benchmark the inversion step of one model (`model, node`) or several.

    models: an ONNX file or a `models.zoo` architecture name (exported with seeded random
    weights; the native variant is then that torchvision module with the same weights), or a
    list of (model, node) or (model, node, size) tuples.
    sizes: input sides (None: the architecture's or the file's own size); a tuple's size wins.
    Returns a JSON-ready dict: machine, conventions, GEMM rate, one result per (model, node, size).
    """
    if threads:
        torch.set_num_threads(threads)
    items = [(models, node)] if isinstance(models, (str, Path)) else [tuple(m) for m in models]
    runs = []
    for item in items:
        if len(item) < 2 or item[1] is None:
            raise UserError(f"give the node to benchmark for {item[0]} (--node NAME)")
        for size in ([item[2]] if len(item) > 2 else (sizes or [None])):
            runs.append((item[0], item[1], size))
    gemm_before = gemm_rate(gemm_n, gemm_repeats)
    results = []
    for model, name, size in runs:
        log.info("benchmarking %s at %s, size %s", model, name, size)
        results.append(bench_model(model, name, size=size, batches=tuple(batches), repeats=repeats,
                                   warmup=warmup, seed=seed, native=native, onnxruntime=onnxruntime,
                                   full=full, memory=memory, fast=fast, compile=compile,
                                   gemm_gflops=gemm_before["best_gflops"], workdir=workdir))
        gc.collect()
    gemm_after = gemm_rate(gemm_n, gemm_repeats)
    best = max(gemm_before["best_gflops"], gemm_after["best_gflops"])
    for r in results:  # against the best GEMM rate seen during the run
        r["gemm_fraction"] = {k: g / best for k, g in r["gflops"].items()}
        r["goals"] = _goals(r)
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "onnxruntime": _ort_version()},
        "conventions": {
            "step": "features at the node + normalised feature distance + backward to the image; "
                    "no regularisers, jitter or optimiser step (adam_step_ms apart)",
            "flops": "a multiply-add = 2 FLOPs, bias and elementwise ops 1 per output element, BN 2, "
                     "pooling kernel size per output (converters.flops); batch 1",
            "step_flops": "2 x forward FLOPs (input-gradient backward = one more forward's worth)",
            "ratios": "median over repeats of per-round ratios, variants interleaved",
            "memory": "peak RSS growth over one step (VmHWM reset via /proc/self/clear_refs after malloc_trim)",
            "gemm": f"best of {gemm_repeats} torch.mm {gemm_n}x{gemm_n} float32, before and after",
        },
        "gemm": {"before": gemm_before, "after": gemm_after, "best_gflops": best},
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


def format_table(report: dict) -> str:
    """Markdown tables: per-iteration times and ratios, throughput, batch scaling, goals."""
    lines = [f"GEMM (torch.mm {report['gemm']['before']['n']}², float32): best "
             f"{report['gemm']['best_gflops']:.1f} GFLOP/s; threads {report['machine']['threads']}", ""]
    lines += ["| model | node | size | fwd GFLOP | converted ms | native ms | conv/native | fast ms | "
              "fast/native | native CL ms | ORT fwd ms | conv fwd ms | full ms | cut/full time | cut/full FLOP |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        t, q = r["times"], r["ratios"]
        ms = lambda k: _fmt(t.get(k, {}).get("median_ms"))  # noqa: E731
        lines.append(
            f"| {Path(str(r['model'])).name} | {r['node']} | {r['size'][0]} | {r['flops_forward'] / 1e9:.2f} | "
            f"{ms('converted')} | {ms('native')} | {_fmt(q.get('converted_over_native'), '.3f')} | {ms('fast')} | "
            f"{_fmt(q.get('fast_over_native'), '.3f')} | {ms('native_channels_last')} | "
            f"{ms('onnxruntime_forward')} | {ms('converted_forward')} | {ms('full')} | "
            f"{_fmt(q.get('time_cut_over_full'), '.3f')} | {r['flop_ratio_cut_over_full']:.3f} |")
    lines += ["", "| model | node | converted GFLOP/s | % GEMM | native GFLOP/s | fast GFLOP/s | fast % GEMM | "
              "ORT fwd GFLOP/s | peak MB converted | native | fast |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        g, f, m = r["gflops"], r.get("gemm_fraction", {}), r.get("peak_memory_mb", {})
        lines.append(
            f"| {Path(str(r['model'])).name} | {r['node']} | {_fmt(g.get('converted'))} | "
            f"{_fmt(100 * f['converted'] if 'converted' in f else None, '.0f')} | {_fmt(g.get('native'))} | "
            f"{_fmt(g.get('fast'))} | {_fmt(100 * f['fast'] if 'fast' in f else None, '.0f')} | "
            f"{_fmt(g.get('onnxruntime_forward'))} | {_fmt(m.get('converted'), '.0f')} | "
            f"{_fmt(m.get('native'), '.0f')} | {_fmt(m.get('fast'), '.0f')} |")
    lines += ["", "| model | node | variant | " + " | ".join(
        f"batch {b} img/s" for b in _all_batches(report)) + " | largest/smallest |",
        "|---|---|---|" + "---|" * (len(_all_batches(report)) + 1)]
    for r in report["results"]:
        for name, s in r.get("batch_scaling", {}).items():
            cells = [_fmt(s["batches"].get(str(b), {}).get("images_per_s"), ".2f") for b in _all_batches(report)]
            lines.append(f"| {Path(str(r['model'])).name} | {r['node']} | {name} | " + " | ".join(cells)
                         + f" | {s['speedup_largest_over_smallest']:.2f}× |")
    lines += ["", "| model | node | goal | value | target | met |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        for name, goal in r["goals"].items():
            lines.append(f"| {Path(str(r['model'])).name} | {r['node']} | {name} | {goal['value']:.3f} | "
                         f"{goal['target']} | {'yes' if goal['met'] else 'no'} |")
    return "\n".join(lines)


def _all_batches(report: dict) -> list[int]:
    found = {int(b) for r in report["results"] for s in r.get("batch_scaling", {}).values() for b in s["batches"]}
    return sorted(found)
