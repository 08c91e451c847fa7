"""ONNX -> `Network`: a differentiable torch graph (onnx2torch) whose every node is addressable.

The module is in eval mode with frozen parameters: gradients reach the input image, never
the weights, and BatchNorm running statistics never move. `network(x, outputs=[...])`
runs a copy of the fx graph cut at the requested nodes, so nothing else is computed.

Speed options (off by default; `inverter.bench` measures them): `channels_last` keeps
4-D weights and the NCHW input in channels-last memory (oneDNN's native layout on CPU);
`fold_batchnorm` folds an inference BatchNorm into the Conv before it inside a cut, where
nothing asks for the Conv's own output; `inplace_relu` runs a ReLU in place inside a cut
where its input feeds nothing else and that input's producer does not need its own output
for the backward pass. Addressable nodes, shapes and values stay the same (folding changes
results by float rounding only, ~1e-7 relative).
"""
from __future__ import annotations

import copy
import itertools
import logging
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import fx, nn

from converters.errors import ModelError, UserError, unsupported_ops
from converters.names import NameTable, NodeInfo, assign_aliases
from converters.spec import METADATA_KEY, InputSpec

log = logging.getLogger(__name__)

MAX_OPSET = 17  # onnx2torch registers converters reliably up to here (DESIGN.md)


# ----------------------------------------------------------------------------- loading
def read_onnx(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file; external data may not point outside the model's folder."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for junk bytes
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}); "
                         "export it again or check the file is complete") from None
    if not model.graph.node:
        raise ModelError(f"{path} holds no ONNX graph (empty or not an ONNX file)")
    folder = path.resolve().parent
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if onnx.external_data_helper.uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if folder not in target.parents:
                raise ModelError(f"{path}: tensor {tensor.name!r} points to external data outside "
                                 f"the model's folder ({location}); refusing to read it")
            if not target.is_file():
                raise ModelError(f"{path}: external data file {location} is missing")
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(folder))
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} fails the ONNX checker: {first}") from None
    return model


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes stable names (`Conv_3`: op type and position) and make names unique."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _unsupported(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    from onnx2torch.node_converters import get_converter

    opsets = {o.domain: o.version for o in model.opset_import}
    bad = []
    for node in model.graph.node:
        try:
            get_converter(domain=node.domain, operation_type=node.op_type, version=opsets.get(node.domain, 1))
        except NotImplementedError:
            bad.append(node)
    return bad


def _convertible(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model, moved to opset 17 when newer ops would have no onnx2torch converter."""
    bad = _unsupported(model)
    if bad and _default_opset(model) > MAX_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MAX_OPSET)
        except Exception as exc:
            raise ModelError(f"opset {_default_opset(model)} model could not be moved to opset "
                             f"{MAX_OPSET} for conversion ({exc}); export at opset {MAX_OPSET}") from None
        bad = _unsupported(model)
    if bad:
        raise ModelError(unsupported_ops(bad, f"op (opset {_default_opset(model)})",
                                         "onnx2torch has no converter for it: cut the model before it or replace the op"))
    return model


# ----------------------------------------------------------------------------- the network
@dataclass
class ParityReport:
    """Relative error max|torch - onnxruntime| / max|onnxruntime| per compared node."""

    errors: dict[str, float]

    @property
    def max_error(self) -> float:
        return max(self.errors.values()) if self.errors else 0.0

    def worst(self) -> tuple[str, float]:
        return max(self.errors.items(), key=lambda kv: kv[1])


# Modules whose backward pass does not use their own output: a ReLU may overwrite it.
_INPLACE_SAFE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear, nn.MaxPool1d, nn.MaxPool2d,
                 nn.MaxPool3d)
_CONV_BN = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


def folded_conv(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A frozen copy of an eval-mode Conv followed by an eval-mode BatchNorm, as one Conv."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() if bn.affine else torch.zeros_like(scale)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    folded = copy.deepcopy(conv)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    weight = (conv.weight.double() * scale.view(shape)).to(conv.weight.dtype)
    folded.weight = nn.Parameter(weight.to(memory_format=_memory_format(conv.weight)), requires_grad=False)
    folded.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + shift).to(conv.weight.dtype),
                               requires_grad=False)
    return folded


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class Network(nn.Module):
    """A frozen, eval-mode torch graph of an ONNX model with a table of addressable nodes."""

    def __init__(self, model: onnx.ModelProto, *, input_spec: InputSpec | None = None,
                 size: tuple[int, int] | None = None, path: str | Path | None = None,
                 channels_last: bool = False, fold_batchnorm: bool = False, inplace_relu: bool = False):
        super().__init__()
        self.fold_batchnorm = fold_batchnorm
        self.inplace_relu = inplace_relu
        import onnx2torch
        from onnx2torch.onnx_graph import OnnxGraph

        model = onnx.ModelProto.FromString(model.SerializeToString())  # never edit the caller's proto
        _name_nodes(model)
        model = _convertible(model)
        self.path = Path(path) if path else None
        self.onnx_model = model
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        if len(inputs) != 1:
            raise ModelError(f"the model has {len(inputs)} graph inputs ({', '.join(i.name for i in inputs)}); "
                             "invert-onnx needs exactly one image input")
        self.input_name = inputs[0].name
        self.input_spec = self._input_spec(model, inputs[0], input_spec, size)
        try:
            gm = onnx2torch.convert(model)
        except Exception as exc:
            raise ModelError(f"onnx2torch could not convert the model: {str(exc).splitlines()[0]}") from None
        gm.eval()  # onnx2torch returns training mode: BN would update its statistics
        for p in gm.parameters():
            p.requires_grad_(False)
        self.graph_module = gm

        unique = list(OnnxGraph(model.graph).nodes)  # onnx2torch's module names, in graph order
        self.nodes: list[NodeInfo] = [
            NodeInfo(index=i, name=n.name, op_type=n.op_type, inputs=list(n.input),
                     outputs=list(n.output), module_name=unique[i])
            for i, n in enumerate(model.graph.node)
        ]
        self._fx_by_module = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
        self._producer = {t: (node, k) for node in self.nodes for k, t in enumerate(node.outputs)}
        self._cuts: dict[tuple[str, ...], fx.GraphModule] = {}
        self._record_shapes()
        assign_aliases(self.nodes, initializers)
        from converters.receptive_field import assign_receptive_fields
        assign_receptive_fields(self.nodes, model)
        self.names = NameTable(self.nodes)
        self.output_names = [o.name for o in model.graph.output]
        self.channels_last = False
        if channels_last:
            self.set_channels_last(True)
        self._identity_checked: InputSpec | None = None  # features() skips adapt when it is the identity
        self._identity = False

    def set_channels_last(self, enabled: bool = True) -> "Network":
        """Keep 4-D weights, and run NCHW inputs, in channels-last memory (or back to contiguous)."""
        self.channels_last = bool(enabled)
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.graph_module.to(memory_format=fmt)
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
        return [(t.dtype, t.device, t.stride()) for t in itertools.chain(self.graph_module.parameters(),
                                                                           self.graph_module.buffers())]

    # -- input spec
    @staticmethod
    def _input_spec(model, value_info, given: InputSpec | None, size) -> InputSpec:
        meta = {p.key: p.value for p in model.metadata_props}
        spec = given or (InputSpec.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else None)
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in value_info.type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise ModelError(f"input {value_info.name!r} has rank {len(dims)}; invert-onnx needs an image "
                             "input of rank 4 (NCHW or NHWC)")
        if spec is None:
            layout = "NHWC" if dims[3] == 3 and dims[1] != 3 else "NCHW"
            spec = InputSpec(layout=layout, source="default (ImageNet mean/std, RGB, [0, 1])")
        h, w = (dims[2], dims[3]) if spec.layout == "NCHW" else (dims[1], dims[2])
        channels = dims[1] if spec.layout == "NCHW" else dims[3]
        if channels not in (None, 3):
            raise ModelError(f"input {value_info.name!r} has {channels} channels; invert-onnx inverts RGB images")
        if h and w:
            if size and tuple(size) != (h, w):
                raise ModelError(f"the model's input size is fixed at {h}x{w}; drop --size or pass --size {h},{w}")
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
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"the model does not run on a {h}x{w} image ({type(exc).__name__}: {text}); "
                             "check --size and that the file is intact") from None
        for node in self.nodes:
            node.shape = shapes.get(node.module_name)

    def example_input(self, batch: int = 1, seed: int | None = None) -> torch.Tensor:
        h, w = self.input_spec.size
        shape = (batch, 3, h, w) if self.input_spec.layout == "NCHW" else (batch, h, w, 3)
        if seed is None:
            return torch.zeros(shape)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(shape, generator=g)

    def resolve(self, name: str) -> NodeInfo:
        return self.names.resolve(name)

    # -- running
    def _tensor_of(self, name: str) -> str:
        """A user name -> the ONNX tensor it means (a node name means its first output)."""
        if name in self._producer:
            return name
        return self.resolve(name).outputs[0]

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
                self._fold_batchnorm(cut)
            if self.inplace_relu:
                self._inplace_relu(cut)
            cut.recompile()
            cut.delete_all_unused_submodules()
            self._cuts[tensors] = cut
        return self._cuts[tensors]

    @staticmethod
    def _fold_batchnorm(cut: fx.GraphModule) -> None:
        """Conv -> BN (the Conv's output used by the BN only) becomes one folded Conv."""
        modules = dict(cut.named_modules())
        for node in list(cut.graph.nodes):
            bn = modules.get(node.target) if node.op == "call_module" else None
            if bn is None or type(bn) not in _CONV_BN.values() or bn.training or not bn.track_running_stats:
                continue
            prev = node.args[0] if node.args else None
            if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
                continue
            conv = modules.get(prev.target)
            if _CONV_BN.get(type(conv)) is not type(bn) or len(node.args) != 1 or node.kwargs:
                continue
            name = f"{prev.target}+folded"
            cut.add_submodule(name, folded_conv(conv, bn))
            prev.target = name
            node.replace_all_uses_with(prev)
            cut.graph.erase_node(node)

    @staticmethod
    def _inplace_relu(cut: fx.GraphModule) -> None:
        """A ReLU whose input feeds nothing else, made by an op whose backward does not read its
        own output, runs in place (one tensor less to allocate and keep for backward)."""
        modules = dict(cut.named_modules())
        for node in list(cut.graph.nodes):
            relu = modules.get(node.target) if node.op == "call_module" else None
            if not isinstance(relu, nn.ReLU) or relu.inplace or len(node.args) != 1:
                continue
            prev = node.args[0]
            if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
                continue
            producer = modules.get(prev.target)
            additive = getattr(producer, "math_op_function", None) in (torch.add, torch.sub)  # onnx2torch Add/Sub
            if not (isinstance(producer, _INPLACE_SAFE) or additive):
                continue
            with cut.graph.inserting_after(node):
                new = cut.graph.call_function(torch.relu_, (prev,))
            node.replace_all_uses_with(new)
            cut.graph.erase_node(node)

    def forward(self, x: torch.Tensor, outputs: list[str] | None = None) -> list[torch.Tensor]:
        """The tensors at `outputs` (any accepted names; default: the model's outputs)."""
        tensors = tuple(self._tensor_of(n) for n in (outputs or self.output_names))
        x = x.to(self.dtype)
        if self.channels_last and x.dim() == 4 and self.input_spec.layout == "NCHW":
            x = x.contiguous(memory_format=torch.channels_last)
        return list(self.cut(tensors)(x))

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the weights (float32 unless moved with `.to`)."""
        tensors = itertools.chain(self.graph_module.parameters(), self.graph_module.buffers())
        return next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)

    def features(self, v: torch.Tensor, outputs: list[str]) -> list[torch.Tensor]:
        """Like forward, from an image in the engine's space (ImageNet-standardised RGB NCHW)."""
        spec = self.input_spec
        if self._identity_checked is not spec:  # input_spec may be replaced: check again
            self._identity_checked, self._identity = spec, adapt_is_identity(spec)
        return self(v if self._identity else spec.adapt(v), outputs)

    # -- parity against onnxruntime
    def check_parity(self, x: torch.Tensor | None = None, nodes: list[str] | None = None,
                     op_types: tuple[str, ...] | None = None) -> ParityReport:
        """Compare the torch graph with onnxruntime at the given nodes (default: all outputs)."""
        import onnxruntime as ort

        if nodes is None and op_types is None:
            chosen = []
        elif nodes is None:
            chosen = [n for n in self.nodes if n.op_type in op_types]
        else:
            chosen = [self.resolve(n) for n in nodes]
        x = self.example_input(seed=0) if x is None else x
        probe = onnx.ModelProto.FromString(self.onnx_model.SerializeToString())
        try:
            inferred = onnx.shape_inference.infer_shapes(probe)
            types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        except Exception:
            types = {}
        floating = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
        tensors = tuple(n.outputs[0] for n in chosen if types.get(n.outputs[0], onnx.TensorProto.FLOAT) in floating)
        tensors = tensors or tuple(self.output_names)
        present = {o.name for o in probe.graph.output}
        for t in tensors:
            if t not in present:
                elem = types.get(t, onnx.TensorProto.FLOAT)
                probe.graph.output.append(onnx.helper.make_tensor_value_info(t, elem, None))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ref = session.run(list(tensors), {self.input_name: x.numpy().astype(np.float32)})
        with torch.no_grad():
            got = self.cut(tensors)(x.to(self.dtype))
        errors = {}
        for tensor, a, b in zip(tensors, got, ref):
            name = self._producer[tensor][0].name if tensor in self._producer else tensor
            scale = max(float(np.abs(b).max()), 1e-12)
            errors[name] = float(np.abs(a.double().numpy() - b).max()) / scale
        return ParityReport(errors)

    def describe(self) -> dict:
        return {"path": str(self.path) if self.path else None,
                "input": {"name": self.input_name, **_spec_dict(self.input_spec)},
                "nodes": len(self.nodes), "outputs": self.output_names}


def adapt_is_identity(spec: InputSpec) -> bool:
    """True when `spec.adapt` maps the engine's space onto itself exactly (torchvision's preprocessing):
    skipping it saves a multiply, an add and their backward per step."""
    if spec.layout != "NCHW" or spec.channel_order != "RGB":
        return False
    for dtype in (torch.float32, torch.float64):
        a, b = spec._affine("cpu", dtype)
        if not (bool((a == 1).all()) and bool((b == 0).all())):
            return False
    return True


def _spec_dict(spec: InputSpec) -> dict:
    return {"layout": spec.layout, "size": list(spec.size), "channel_order": spec.channel_order,
            "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std), "source": spec.source}


def load(path: str | Path, *, input_spec: InputSpec | None = None,
         size: tuple[int, int] | None = None, channels_last: bool = False, fold_batchnorm: bool = False,
         inplace_relu: bool = False) -> Network:
    """Read an ONNX file into a `Network` (clear errors for missing/corrupt/unsupported files).

    channels_last, fold_batchnorm, inplace_relu: the speed options (module docstring)."""
    return Network(read_onnx(path), input_spec=input_spec, size=size, path=path, channels_last=channels_last,
                   fold_batchnorm=fold_batchnorm, inplace_relu=inplace_relu)


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[,x]\s*(\d+))?\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'224' or '224,160' or '224x160' -> (H, W)."""
    m = _SIZE.match(str(text))
    if not m or int(m.group(1)) <= 0:
        raise UserError(f"size must look like 224 or 224,160, not {text!r}")
    h = int(m.group(1))
    return (h, int(m.group(2) or h))
