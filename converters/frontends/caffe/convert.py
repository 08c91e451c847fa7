"""Caffe (deploy prototxt + caffemodel) -> ONNX, opset 17, without Caffe or a pip converter.

This module walks the net (TEST-phase layers, old-style inputs, BatchNorm + Scale folds) and
writes the file. One small converter function per Caffe layer type lives in `layers/` by family,
registered with `@converter("Type")` (`registry`, the shape of onnx2torch's registry):
supporting a new layer is one new function. Each reads its bottoms from the `Builder`
(`builder`), adds ONNX node(s) and writes its tops. `proto` reads the files (`schema`: the messages).

Caffe facts the converter honours:

- In-place layers (top == bottom) get distinct ONNX tensors. Every node keeps its Caffe
  layer name; a blob's *last* value carries the blob's own name (what `net.blobs["conv3_1"]`
  holds after a forward pass: after BatchNorm, Scale and ReLU), earlier values are named
  `{blob}/{layer}_out` (`conv3_1/conv3_1_out`, `conv3_1/bn3_1_out`).
- BatchNorm's third blob is a scale factor (mean and variance are divided by it); a Scale
  that directly and only follows a BatchNorm is folded into one BatchNormalization node named
  after the BatchNorm layer, so conv -> bn -> relu chains stay visible to the name walk.
- Pooling rounds the output size up, but drops a last window that would start in the
  padding: ceil_mode=1 exactly when that gives a larger output than floor rounding.
- A caffemodel may hold more layers than the prototxt: blobs are matched by layer name.

`invert_onnx.caffe_layer_outputs` in the ONNX metadata maps each Caffe layer to the ONNX
tensor(s) holding its output, and `invert_onnx.input_spec` records the preprocessing.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import onnx

from converters.frontends.atomic_output import save_onnx
from converters.errors import ConversionError, first_line
from converters.frontends.caffe import layers  # noqa: F401  (registers every layer converter)
from converters.frontends.caffe.builder import Builder
from converters.frontends.caffe.proto import LayerParameter, NetParameter, read_caffemodel, read_prototxt
from converters.frontends.caffe.registry import CONVERTERS
from converters.frontends.cleanup import set_input_spec
from converters.input_spec import InputSpec
from converters.network.onnx_io import OPSET

log = logging.getLogger(__name__)

MIN_OPSET = 13  # Softmax over one axis (Caffe's semantics) from opset 13 on
LAYER_OUTPUTS_KEY = "invert_onnx.caffe_layer_outputs"
CAFFE_SPEC = InputSpec(channel_order="BGR", scale=255.0, mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
                       source="Caffe default (BGR, [0, 255], ImageNet mean subtracted)")
# Layers that only matter for training: a train_val prototxt converts without them.
TRAINING_ONLY = {"SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
                 "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Silence"}


def _active_layers(net: NetParameter) -> list[LayerParameter]:
    """The layers of the TEST phase (a deploy net), by Caffe's include/exclude rules."""
    state = net.state  # defaults: phase TEST, level 0, no stages

    def meets(rule) -> bool:
        if rule.HasField("phase") and rule.phase != state.phase:
            return False
        if rule.HasField("min_level") and state.level < rule.min_level:
            return False
        if rule.HasField("max_level") and state.level > rule.max_level:
            return False
        return all(s in state.stage for s in rule.stage) and not any(s in state.stage for s in rule.not_stage)

    active = []
    for layer in net.layer:
        if layer.include:
            keep = any(meets(rule) for rule in layer.include)
        else:
            keep = not any(meets(rule) for rule in layer.exclude)
        if keep:
            active.append(layer)
    return active


def _plan_folds(layers: list[LayerParameter], builder: Builder) -> None:
    """Find Scale layers that directly and only follow a BatchNorm: fold each into it."""
    version: dict[str, int] = defaultdict(int)
    readers: dict[tuple[str, int], list[LayerParameter]] = defaultdict(list)
    writer: dict[tuple[str, int], LayerParameter] = {}
    for layer in layers:
        for blob in layer.bottom:
            readers[(blob, version[blob])].append(layer)
        for blob in layer.top:
            version[blob] += 1
            writer[(blob, version[blob])] = layer
    for key, bn in writer.items():
        if bn.type != "BatchNorm" or len(bn.top) != 1:
            continue
        users = readers.get(key, [])
        if len(users) != 1 or users[0].type != "Scale":
            continue
        scale = users[0]
        p = scale.scale_param
        if len(scale.bottom) == 1 and len(scale.top) == 1 and p.axis in (1, -3) and p.num_axes == 1:
            builder.fused[bn.name] = scale
            builder.skip.add(scale.name)


def _net_inputs(net: NetParameter, builder: Builder) -> None:
    """The old-style inputs: `input:` with `input_shape { dim }` or four `input_dim:` each."""
    for i, blob in enumerate(net.input):
        if i < len(net.input_shape):
            shape = list(net.input_shape[i].dim)
        elif len(net.input_dim) >= 4 * (i + 1):
            shape = list(net.input_dim[4 * i: 4 * i + 4])
        else:
            raise ConversionError(f"net input {blob!r} has no shape (input_shape {{ dim: ... }} or 4 input_dim)")
        builder.graph_input(None, blob, shape)


def _default_spec(layers: list[LayerParameter]) -> InputSpec:
    """Caffe's usual preprocessing, or the mean/scale a data layer's transform_param gives."""
    for layer in layers:
        t = layer.transform_param
        if layer.HasField("transform_param") and len(t.mean_value) == 3:
            return InputSpec(channel_order="BGR", scale=255.0, mean=tuple(float(v) for v in t.mean_value),
                             std=(1.0 / (t.scale or 1.0),) * 3, source=f"the {layer.name!r} layer's transform_param")
    return CAFFE_SPEC


def needed_layers(layers: list[LayerParameter], outputs: list[str]) -> list[LayerParameter]:
    """The layers that the named output layers (or blobs) need, in net order: walking back from the last, a
    layer is kept when it is named or writes a blob a kept layer reads at that point (in-place layers after
    a named layer are not)."""
    names = {layer.name for layer in layers}
    blobs = {top for layer in layers for top in layer.top}
    unknown = [o for o in outputs if o not in names and o not in blobs]
    if unknown:
        raise ConversionError(f"no Caffe layer or blob named {', '.join(map(repr, unknown))}; "
                              f"layers: {', '.join(layer.name for layer in layers[:20])}"
                              f"{' ...' if len(layers) > 20 else ''}")
    # a blob name stands for the last layer writing it
    wanted_layers = {o for o in outputs if o in names}
    for o in outputs:
        if o not in names:
            wanted_layers.add(next(layer.name for layer in reversed(layers) if o in layer.top))
    wanted: set[str] = set()
    keep: list[LayerParameter] = []
    for layer in reversed(layers):
        if layer.name in wanted_layers or any(top in wanted for top in layer.top):
            keep.append(layer)
            wanted -= set(layer.top)
            wanted |= set(layer.bottom)
    return keep[::-1]


def caffe_to_onnx(prototxt: str | Path, caffemodel: str | Path, out_path: str | Path, *,
                  input_spec: InputSpec | None = None, opset: int = OPSET,
                  outputs: list[str] | None = None) -> Path:
    """Convert a Caffe deploy net and its weights to an ONNX file (batch dimension dynamic).

    input_spec: the preprocessing to record (default: BGR, [0, 255], ImageNet mean subtracted);
    a size in it replaces the prototxt's input height and width.
    outputs: layer (or blob) names: only the layers they need are converted (a detection head with layers
    this converter lacks is cut off), and the graph's outputs are theirs.
    """
    if not MIN_OPSET <= opset <= OPSET:
        raise ConversionError(f"Caffe nets convert at ONNX opset {MIN_OPSET} to {OPSET}, not {opset}")
    out_path = Path(out_path)
    net = read_prototxt(prototxt)
    weights: dict[str, LayerParameter] = {}
    for layer in read_caffemodel(caffemodel).layer:
        if layer.name not in weights or (len(layer.blobs) and not len(weights[layer.name].blobs)):
            weights[layer.name] = layer
    layers = _active_layers(net)
    spec = input_spec or _default_spec(layers)
    if outputs:
        kept = needed_layers(layers, outputs)
        kept_names = {layer.name for layer in kept}
        cut = [layer for layer in layers if layer.name not in kept_names and layer.type not in TRAINING_ONLY]
        if cut:
            log.info("--outputs %s: %d Caffe layer(s) not needed are not converted (%s)", " ".join(outputs),
                     len(cut), ", ".join(sorted({layer.type for layer in cut})))
        layers = kept
    builder = Builder(weights, spec.size)
    _net_inputs(net, builder)
    _plan_folds(layers, builder)
    for layer in layers:
        if layer.name in builder.skip:
            continue
        convert = CONVERTERS.get(layer.type)
        if convert is None:
            if layer.type in TRAINING_ONLY:
                log.info("skipping training-only layer %s (%s)", layer.name, layer.type)
                continue
            raise ConversionError(f"unsupported Caffe layer type {layer.type!r} (layer {layer.name!r}); "
                                  f"supported: {', '.join(sorted(CONVERTERS))}")
        try:
            convert(builder, layer)
        except ConversionError:
            raise
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ConversionError(f"cannot convert Caffe layer {layer.name!r} ({layer.type}): {exc}") from None
    model = builder.model(net.name, opset)
    first = builder.inputs[0].type.tensor_type.shape.dim
    if len(first) == 4:
        spec = spec.with_size(first[2].dim_value, first[3].dim_value)
    model = set_input_spec(model, spec)
    entry = model.metadata_props.add()
    entry.key, entry.value = LAYER_OUTPUTS_KEY, json.dumps(builder.layer_outputs)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted Caffe net fails the ONNX checker: {first_line(exc)}") from None
    save_onnx(model, out_path)
    log.info("converted %s (%d layers) to %s (%d nodes)", Path(prototxt).name, len(layers), out_path,
             len(model.graph.node))
    return out_path


def layer_outputs(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Caffe layer name -> the ONNX tensor(s) holding its output, from a converted model's metadata."""
    meta = {p.key: p.value for p in model.metadata_props}
    return json.loads(meta.get(LAYER_OUTPUTS_KEY, "{}"))
