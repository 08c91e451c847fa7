"""One module per family of Caffe layer types; importing this package registers them all."""
from converters.frontends.caffe.layers import activation, conv, dense, inputs, merge, normalization, pool, shape

__all__ = ["activation", "conv", "dense", "inputs", "merge", "normalization", "pool", "shape"]
