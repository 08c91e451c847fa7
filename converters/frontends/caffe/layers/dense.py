"""InnerProduct (Caffe flattens everything after the batch axis)."""
from __future__ import annotations

import numpy as np

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder, axis_index
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


@converter("InnerProduct")
def _inner_product(builder: Builder, layer: LayerParameter) -> None:
    p = layer.inner_product_param
    x = builder.bottom(layer)
    dims = builder.dims(x)
    if axis_index(p.axis, len(dims), layer) != 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: InnerProduct over axis {p.axis} is not supported")
    k = int(np.prod(dims[1:]))
    if len(dims) > 2:  # Caffe flattens everything after the batch axis implicitly
        x = builder.aux("Flatten", [x], layer, "flatten", (dims[0], k), axis=1)
    blobs = builder.blobs(layer, 2 if p.bias_term else 1)
    shape = (k, p.num_output) if p.transpose else (p.num_output, k)
    inputs = [x, builder.const(layer, "weight", builder.fit(layer, blobs[0], shape, "weight"))]
    if p.bias_term:
        inputs.append(builder.const(layer, "bias", builder.fit(layer, blobs[1], (p.num_output,), "bias")))
    builder.add("Gemm", inputs, layer, (dims[0], p.num_output), transB=0 if p.transpose else 1)
