"""ONNX -> `Network`: a differentiable torch graph (onnx2torch) whose every node is addressable.

The module is in eval mode with frozen parameters: gradients reach the input image, never
the weights, and BatchNorm running statistics never move. `network(x, outputs=[...])`
runs a copy of the fx graph cut at the requested nodes, so nothing else is computed.

Speed options (off by default; `benchmarks.speed` measures them): `channels_last` keeps
4-D weights and the NCHW input in channels-last memory (oneDNN's native layout on CPU);
`fold_batchnorm` folds an inference BatchNorm into the Conv before it inside a cut, where
nothing asks for the Conv's own output; `inplace_relu` runs a ReLU in place inside a cut
where its input feeds nothing else and that input's producer does not need its own output
for the backward pass. Addressable nodes, shapes and values stay the same (folding changes
results by float rounding only, ~1e-7 relative).
"""
from __future__ import annotations

import itertools
import logging
import operator
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import fx, nn

from converters.errors import ModelError, NodeError, first_line
from converters.network import checks
from converters.network.names import NameTable, NodeInfo, assign_aliases, recorded_module_path
from converters.input_spec import InputSpec, guess_layout, recorded_spec
from converters.network.edges import producers
from converters.network.onnx_io import prepare, read_onnx
from converters.network.parity import ParityReport, check_parity
from converters.network.rewrites import fold_batchnorm, inplace_relu
from converters.network.memory import check_memory
from converters.network.safe_names import safe_copy

log = logging.getLogger(__name__)

class Network(nn.Module):
    """A frozen, eval-mode torch graph of an ONNX model with a table of addressable nodes."""

    def __init__(self, model: onnx.ModelProto, *, input_spec: InputSpec | None = None,
                 size: tuple[int, int] | None = None, path: str | Path | None = None,
                 channels_last: bool = False, fold_batchnorm: bool = False, inplace_relu: bool = False,
                 input_name: str | None = None, other_inputs: dict[str, np.ndarray] | None = None,
                 max_memory: float | None = None, calibrate: bool = True):
        """max_memory: bytes the model may need at this input size (estimated from the graph before it
        runs; None: half the physical memory, math.inf: no limit).
        calibrate: when neither `input_spec` nor the file records the preprocessing (or the file marks
        it as a guess), find it from the network (`converters.network.calibrate`); False keeps the
        ImageNet default, marked as a guess."""
        super().__init__()
        self.fold_batchnorm = fold_batchnorm
        self.inplace_relu = inplace_relu
        from onnx2torch.onnx_graph import OnnxGraph

        from converters.network import normalise
        from converters.network.onnx_io import unsupported_nodes

        model = onnx.ModelProto.FromString(model.SerializeToString())  # never edit the caller's proto
        self.notes: list[str] = []  # what was done to the file before conversion, said on every command
        moved = normalise.constants_to_initializers(model)
        if moved:
            self.notes.append(f"{moved} Constant node(s) moved into initializers")
        cast = normalise.constant_cast_likes(model)
        if cast:
            self.notes.append(f"{cast} CastLike node(s) of constants made constants")
        moved += cast  # what they feed folds into initializers below
        normalise.drop_weight_identities(model)
        self.quantized = normalise.is_quantized(model)
        self.notes += normalise.dequantize(model)
        if self.quantized:
            self.notes.append("quantized model: inverting its float equivalent")
        chosen = self._choose_input(model, input_name, other_inputs)
        self.path = Path(path) if path else None
        self.input_name = chosen.name
        self.input_spec = self._input_spec(model, chosen, input_spec, size)
        shape = self.input_spec.tensor_shape(1)
        checks.check_size(model, self.input_name, self.input_spec, given=size is not None)
        # before anything folds or runs the graph: a 1 KB file may declare a 115 GB tensor
        self.memory_estimate = check_memory(model, self.input_name, shape, max_memory)
        unfixed = model.SerializeToString() if size else None  # to find a size it runs at, should this one fail
        if normalise.fix_input_shape(model, chosen.name, shape) or normalise.has_dynamic_shapes(model) or moved:
            model = normalise.fold_shapes(model)
        if self.quantized:
            normalise.float_biases(model)
        model = prepare(model, strict=False)
        self.onnx_model = model
        initializers = {t.name for t in model.graph.initializer}
        try:
            converted, reasons, gm, safe = self._convert(model, unsupported_nodes(model))
        except ModelError as exc:
            raise self._size_error(exc, unfixed) from None
        self.converted_model = converted
        # NaN, inf, 1e38 in a weight: refused at load (not "diverged after 0 iterations"), before the graph runs
        checks.check_loaded_weights(itertools.chain(gm.parameters(), gm.buffers()), converted)
        gm.eval()  # onnx2torch returns training mode: BN would update its statistics
        for p in gm.parameters():
            p.requires_grad_(False)
        self.graph_module = gm

        # onnx2torch's module names (generated: n0, n1 ...), in graph order, for the converted nodes
        module_of = dict(zip((n.name for n in converted.graph.node), OnnxGraph(safe.graph).nodes))
        self.nodes: list[NodeInfo] = [
            NodeInfo(index=i, name=n.name, op_type=n.op_type, inputs=list(n.input),
                     outputs=list(n.output), module_name=module_of.get(n.name), unsupported=reasons.get(n.name),
                     scope=recorded_module_path({p.key: p.value for p in n.metadata_props}))
            for i, n in enumerate(model.graph.node)
        ]
        if reasons:
            first = next(n for n in self.nodes if n.unsupported and not n.unsupported.startswith("after "))
            feed = next((n for n in self.nodes if first.inputs and first.inputs[0] in n.outputs and not n.unsupported),
                        None)
            deepest = f" (the deepest on its path: {feed.name!r})" if feed else ""
            self.notes.append(f"{len(reasons)} node(s) from {first.op_type} {first.name!r} on are not converted "
                              f"({first.unsupported}); nodes before them can be inverted{deepest}")
        self._fx_by_module = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
        self._producer = producers(self.nodes)
        self._cuts: dict[tuple[str, ...], fx.GraphModule] = {}
        try:
            self._record_shapes()
        except ModelError as exc:
            raise self._size_error(exc, unfixed) from None
        assign_aliases(self.nodes, initializers)
        from converters.network.receptive_field import assign_receptive_fields
        assign_receptive_fields(self.nodes, model)
        self.names = NameTable(self.nodes)
        self.output_names = [o.name for o in converted.graph.output]
        self.channels_last = False
        if channels_last:
            self.set_channels_last(True)
        self._identity_checked: InputSpec | None = None  # from_standardised() skips adapt when it is the identity
        self._identity = False
        if calibrate and self.input_spec.guessed:
            from converters.network.calibrate import calibrate as calibrated

            self.input_spec = calibrated(self)

    @staticmethod
    def _convert(model: onnx.ModelProto, unsupported: dict[str, str], retry: bool = True):
        """(the convertible sub-graph, {node: why it is not converted}, its GraphModule, the safe-named copy onnx2torch
        converted). A converter that refuses
        a node it was given (an attribute it does not implement) makes that node unsupported too: cut again."""
        import onnx2torch

        from converters.errors import unsupported_ops
        from converters.network.extract import convertible_subgraph
        from converters.network.onnx_io import refused_nodes

        converted, reasons = convertible_subgraph(model, unsupported)
        if not converted.graph.node:  # nothing before the first unsupported op: nothing to invert
            bad = [n for n in model.graph.node if n.name in unsupported]
            raise ModelError(unsupported_ops(bad, "op", f"{unsupported[bad[0].name]}, and no node before it can be "
                                             "inverted; replace the op"))
        safe, _ = safe_copy(converted)  # onnx2torch and torch.fx see generated identifiers only
        try:
            return converted, reasons, onnx2torch.convert(safe), safe
        except Exception as exc:
            refused = refused_nodes(converted) if retry else {}
            if not refused:
                raise ModelError(f"onnx2torch could not convert the model: {first_line(exc)}") from None
            return Network._convert(model, {**unsupported, **refused}, retry=False)

    def set_channels_last(self, enabled: bool = True) -> "Network":
        """Keep 4-D weights, and run NCHW inputs, in channels-last memory (or back to contiguous)."""
        self.channels_last = bool(enabled)
        fmt = torch.channels_last if enabled else torch.contiguous_format
        # 4-D weights only: Module.to(memory_format=...) also tries 5-D buffers (a dynamo export's AdaptiveAvgPool
        # indices) and fails on them
        self.graph_module._apply(lambda t: t.contiguous(memory_format=fmt) if t.dim() == 4 else t)
        self._cuts.clear()
        return self

    def _apply(self, fn, *args, **kwargs):
        # a cut holding folded copies must be rebuilt when .to() changes device, dtype or layout
        # (the engine calls .to(device, dtype) on every run: a no-op must not drop the cuts)
        before = self._layout()
        out = super()._apply(fn, *args, **kwargs)
        if self._layout() != before:
            self._cuts.clear()
        return out

    def _layout(self) -> list[tuple]:
        return [(t.dtype, t.device, t.stride()) for t in self._tensors()]

    def _tensors(self):
        """The weights and buffers of the torch graph (what `.to` moves)."""
        return itertools.chain(self.graph_module.parameters(), self.graph_module.buffers())

    # -- inputs
    def _choose_input(self, model, name: str | None, others: dict | None):
        """The graph input to invert: `name`, else the first image-shaped one (rank 4 with 1, 3 or 4
        channels), said in the notes. Every other input becomes a constant (`others`, else zeros)."""
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        if not inputs:
            raise ModelError("the model has no graph input")
        dims = {i.name: [d.dim_value if d.HasField("dim_value") else None
                         for d in i.type.tensor_type.shape.dim] for i in inputs}
        if name is not None:
            chosen = next((i for i in inputs if i.name == name), None)
            if chosen is None:
                raise ModelError(f"no graph input {name!r}; the model's inputs: {', '.join(i.name for i in inputs)}")
        else:
            image = [i for i in inputs if len(dims[i.name]) == 4 and checks.is_float_tensor(i)
                     and (dims[i.name][1] in (1, 3, 4) or dims[i.name][3] in (1, 3, 4))]
            chosen = (image or inputs)[0]
            if len(inputs) > 1:
                self.notes.append(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): "
                                  f"inverting {chosen.name!r} (choose with --input NAME)")
        checks.check_input_type(chosen)
        others = dict(others or {})
        for vi in inputs:
            if vi.name == chosen.name:
                continue
            if vi.type.WhichOneof("value") != "tensor_type":
                raise ModelError(f"input {vi.name!r} is {checks.type_name(vi)}: invert-onnx can fix only tensor "
                                 "inputs to a constant; export the model without it")
            shape = [d if d else 1 for d in dims[vi.name]]
            elem = vi.type.tensor_type.elem_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32
            value = np.asarray(others.pop(vi.name)) if vi.name in others else np.zeros(shape, dtype)
            model.graph.initializer.append(onnx.numpy_helper.from_array(value.astype(dtype), vi.name))
            self.notes.append(f"input {vi.name!r} is fixed to a constant "
                              f"of shape {list(value.shape)}")
        keep = [i for i in model.graph.input if i.name == chosen.name or i.name in initializers]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        if others:
            raise ModelError(f"no other graph input named {', '.join(others)}")
        return chosen

    def _size_error(self, exc: ModelError, unfixed: bytes | None) -> ModelError:
        """A failure at a --size the graph does not take, said with the nearest size it runs at."""
        from converters.network.sizes import nearest_size, size_problem

        if unfixed is None:
            return exc
        h, w = self.input_spec.size
        problem = size_problem(unfixed, self.input_name, self.input_spec.tensor_shape(1))
        if problem is None:  # it runs at this size: the failure is not about the size
            return exc
        near = nearest_size(unfixed, self.input_name, self.input_spec, (h, w))
        hint = f"--size {near[0]},{near[1]} runs" if near else "no size near it runs either; check the file"
        return ModelError(f"the model does not run on a {h}x{w} input (onnxruntime: {problem}); {hint}")

    # -- input spec
    @staticmethod
    def _input_spec(model, value_info, given: InputSpec | None, size) -> InputSpec:
        spec = given or recorded_spec(model)
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in value_info.type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise ModelError(f"input {value_info.name!r} has rank {len(dims)}; invert-onnx needs an image "
                             "input of rank 4 (NCHW or NHWC)")
        if spec is None:
            layout = guess_layout(dims)
            spec = InputSpec(layout=layout, source="default (ImageNet mean/std, RGB, [0, 1])", confidence="guess")
        h, w = (dims[2], dims[3]) if spec.layout == "NCHW" else (dims[1], dims[2])
        channels = dims[1] if spec.layout == "NCHW" else dims[3]
        if channels not in (None, 3):
            try:
                spec = spec.with_channels(channels)
            except ModelError as exc:
                raise ModelError(f"input {value_info.name!r} has {channels} channels: {exc}") from None
        if h and w:
            if size and tuple(size) != (h, w):  # a fully convolutional graph runs at other sizes than it declares
                from converters.network.sizes import size_problem

                problem = size_problem(model.SerializeToString(), value_info.name, spec.with_size(*size).tensor_shape(1))
                if problem is not None:
                    raise ModelError(f"the model's input size is fixed at {h}x{w} and its graph does not run at "
                                     f"{size[0]}x{size[1]} (onnxruntime: {problem}); drop --size or pass --size {h},{w}")
                log.warning("the model declares its input as %dx%d; its graph runs at %dx%d: re-fixed there",
                            h, w, *size)
                return spec.with_size(*size)
            return spec.with_size(h, w)
        if size:
            return spec.with_size(*size)
        if spec.size:
            return spec
        raise ModelError("the model's input size is dynamic: give one with --size H[,W] (for example --size 224)")

    # -- node table
    def _record_shapes(self) -> None:
        shapes: dict[str, tuple[int, ...]] = {}

        class Recorder(fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                if n.op == "call_module":
                    first = out[0] if isinstance(out, (tuple, list)) else out
                    if isinstance(first, torch.Tensor):
                        shapes[n.target] = tuple(first.shape)
                return out

        h, w = self.input_spec.size
        try:
            with torch.no_grad():
                Recorder(self.graph_module).run(self.example_input())
        except Exception as exc:  # a graph that converts but cannot run at this size
            raise ModelError(f"the model does not run on a {h}x{w} image ({type(exc).__name__}: {first_line(exc)}); "
                             "check --size and that the file is intact") from None
        for node in self.nodes:
            node.shape = shapes.get(node.module_name)

    def example_input(self, batch: int = 1, seed: int | None = None) -> torch.Tensor:
        shape = self.input_spec.tensor_shape(batch)
        if seed is None:
            return torch.zeros(shape)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(shape, generator=g)

    def resolve(self, name: str) -> NodeInfo:
        return self.names.resolve(name)

    # -- running
    def _tensor_of(self, name: str) -> str:
        """A user name -> the ONNX tensor it means (a node name means its first output)."""
        node = self._producer[name][0] if name in self._producer else self.resolve(name)
        if node.unsupported:
            raise NodeError(f"node {node.name!r} ({node.op_type}) cannot be inverted: {node.unsupported}; "
                            "choose a node before it (`invert-onnx nodes` marks them)")
        return name if name in self._producer else node.outputs[0]

    def cut(self, tensors: tuple[str, ...]) -> fx.GraphModule:
        """A GraphModule returning exactly these ONNX tensors, computing only what they need."""
        if tensors not in self._cuts:
            graph = fx.Graph()
            val_map: dict[fx.Node, fx.Node] = {}
            graph.graph_copy(self.graph_module.graph, val_map)
            outs = []
            for tensor in tensors:
                node, k = self._producer[tensor]
                value = val_map[self._fx_by_module[node.module_name]]
                if len(node.outputs) > 1:
                    value = graph.call_function(operator.getitem, (value, k))
                outs.append(value)
            graph.output(tuple(outs))
            cut = fx.GraphModule(self.graph_module, graph)
            cut.graph.eliminate_dead_code()
            if self.fold_batchnorm:
                fold_batchnorm(cut)
            if self.inplace_relu:
                inplace_relu(cut)
            cut.recompile()
            cut.delete_all_unused_submodules()
            self._cuts[tensors] = cut
        return self._cuts[tensors]

    def forward(self, x: torch.Tensor, outputs: list[str] | None = None) -> list[torch.Tensor]:
        """The tensors at `outputs` (any accepted names; default: the model's outputs).

        x is in the model's own input space (its layout, channel order, scale, mean and std:
        `input_spec`); `from_standardised` takes the engine's space instead."""
        tensors = tuple(self._tensor_of(n) for n in (outputs or self.output_names))
        x = x.to(self.dtype)
        if self.channels_last and x.dim() == 4 and self.input_spec.layout == "NCHW":
            x = x.contiguous(memory_format=torch.channels_last)
        return list(self.cut(tensors)(x))

    @property
    def device(self) -> torch.device:
        """Where the weights are (the CPU unless moved with `.to`)."""
        return next((t.device for t in self._tensors()), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the weights (float32 unless moved with `.to`)."""
        return next((t.dtype for t in self._tensors() if t.is_floating_point()), torch.float32)

    def from_standardised(self, v: torch.Tensor, outputs: list[str]) -> list[torch.Tensor]:
        """Like forward, from an image in the engine's space (ImageNet-standardised RGB NCHW,
        `converters.input_spec.standardise`), adapted exactly to the model's own input."""
        spec = self.input_spec
        if self._identity_checked is not spec:  # input_spec may be replaced: check again
            self._identity_checked, self._identity = spec, spec.is_identity()
        return self(v if self._identity else spec.adapt(v), outputs)

    # -- parity against onnxruntime
    def check_parity(self, x: torch.Tensor | None = None, nodes: list[str] | None = None,
                     op_types: tuple[str, ...] | None = None) -> ParityReport:
        """Compare the torch graph with onnxruntime at the given nodes (default: all outputs)."""
        return check_parity(self, x, nodes, op_types)

    def describe(self) -> dict:
        return {"path": str(self.path) if self.path else None,
                "input": {"name": self.input_name, **_spec_dict(self.input_spec)},
                "nodes": len(self.nodes), "outputs": self.output_names, "notes": self.notes}


def detected_spec(model: onnx.ModelProto, input_name: str | None = None) -> InputSpec:
    """What the graph itself says about its image input (layout, channels, size where fixed) with the
    ImageNet default normalisation marked as a guess: the base that preprocessing flags refine."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    dims_of = {i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
               for i in inputs}
    image = [i.name for i in inputs if len(dims_of[i.name]) == 4
             and (dims_of[i.name][1] in (1, 3, 4) or dims_of[i.name][3] in (1, 3, 4))]
    name = input_name if input_name in dims_of else (image or list(dims_of) or [None])[0]
    dims = dims_of.get(name)
    spec = InputSpec(source="default (ImageNet mean/std, RGB, [0, 1])", confidence="guess")
    if not dims or len(dims) != 4:
        return spec
    layout = guess_layout(dims)
    channels = dims[1] if layout == "NCHW" else dims[3]
    return InputSpec(layout=layout, source=spec.source, confidence="guess").with_channels(
        channels if channels in (1, 3, 4) else 3)


def _spec_dict(spec: InputSpec) -> dict:
    return {"layout": spec.layout, "size": list(spec.size), "channels": spec.channels, "channel_order": spec.channel_order,
            "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std), "source": spec.source,
            "confidence": spec.confidence}


def load(path: str | Path, *, input_spec: InputSpec | None = None,
         size: tuple[int, int] | None = None, channels_last: bool = False, fold_batchnorm: bool = False,
         inplace_relu: bool = False, input_name: str | None = None, max_memory: float | None = None,
         calibrate: bool = True) -> Network:
    """Read an ONNX file into a `Network` (clear errors for missing/corrupt/unsupported files).

    channels_last, fold_batchnorm, inplace_relu: the speed options (module docstring)."""
    return Network(read_onnx(path, max_memory), input_spec=input_spec, size=size, path=path,
                   channels_last=channels_last,
                   fold_batchnorm=fold_batchnorm, inplace_relu=inplace_relu, input_name=input_name,
                   max_memory=max_memory, calibrate=calibrate)
