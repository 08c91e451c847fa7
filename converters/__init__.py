"""Model -> ONNX front-ends (Caffe, TensorFlow/Keras, PyTorch), ONNX clean-up, ONNX -> Network."""
from converters.errors import ConversionError, ModelError, NodeError, UserError
from converters.frontends import detect_framework, to_onnx
from converters.network.network import Network, load
from converters.network.onnx_io import read_onnx
from converters.input_spec import InputSpec

__all__ = ["ConversionError", "InputSpec", "ModelError", "Network", "NodeError", "UserError",
           "detect_framework", "load", "read_onnx", "to_onnx"]
