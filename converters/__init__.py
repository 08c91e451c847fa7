"""Model -> ONNX front-ends (Caffe, TensorFlow/Keras, PyTorch), ONNX clean-up, ONNX -> Network."""
from converters.errors import ConversionError, ModelError, NodeError, UserError
from converters.onnx_torch import Network, load, read_onnx
from converters.spec import InputSpec

__all__ = ["ConversionError", "InputSpec", "ModelError", "Network", "NodeError", "UserError",
           "load", "read_onnx"]
