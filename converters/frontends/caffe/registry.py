"""The Caffe layer converter registry: one function per layer type, `@converter("Type")`.

The shape of onnx2torch's node_converters: a converter reads its bottoms from the `Builder`,
adds ONNX node(s) and writes its tops. Supporting a new layer type is one new function in
`layers/`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from converters.frontends.caffe.builder import Builder
    from converters.frontends.caffe.proto import LayerParameter

Converter = Callable[["Builder", "LayerParameter"], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*layer_types: str) -> Callable[[Converter], Converter]:
    """Register the function that converts these Caffe layer types."""
    def register(fn: Converter) -> Converter:
        for layer_type in layer_types:
            if layer_type in CONVERTERS:
                raise ValueError(f"Caffe layer type {layer_type} already has a converter")
            CONVERTERS[layer_type] = fn
        return fn
    return register
