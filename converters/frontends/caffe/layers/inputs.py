"""Net inputs: the Input layer and training-style data layers."""
from __future__ import annotations

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


@converter("Input")
def _input(builder: Builder, layer: LayerParameter) -> None:
    shapes = list(layer.input_param.shape)
    if not shapes:
        raise ConversionError(f"Input layer {layer.name!r} gives no shape (input_param {{ shape {{ dim: ... }} }})")
    for i, top in enumerate(layer.top):
        builder.graph_input(layer, top, list(shapes[min(i, len(shapes) - 1)].dim))


@converter("Data", "ImageData", "MemoryData", "DummyData")
def _data(builder: Builder, layer: LayerParameter) -> None:
    """Training-style data layers: the image top becomes the net input (labels are dropped)."""
    if layer.type == "MemoryData":
        p = layer.memory_data_param
        shape = [p.batch_size or 1, p.channels or 3, p.height, p.width]
    elif layer.type == "DummyData":
        p = layer.dummy_data_param
        shape = list(p.shape[0].dim) if p.shape else [p.num[0], p.channels[0], p.height[0], p.width[0]]
    else:
        crop = layer.transform_param.crop_size
        side = crop or (layer.image_data_param.crop_size if layer.type == "ImageData" else layer.data_param.crop_size)
        shape = [1, 3, side, side]
    if len(shape) == 4 and not all(shape[2:]) and builder.size:
        shape[2:] = builder.size
    if any(not d for d in shape):
        raise ConversionError(f"{layer.type} layer {layer.name!r} does not fix the image size: "
                              "give one (--size H[,W]) or use an Input layer in a deploy prototxt")
    builder.graph_input(layer, layer.top[0], shape)
