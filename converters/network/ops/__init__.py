"""The one home for the ONNX ops this project adds to onnx2torch: one small file per op.

Each file registers its converters through onnx2torch's own registry (`add_converter`, keyed by
domain, op type and the op's schema version), so `onnx2torch.convert` and the unsupported-op check
(`converters.network.onnx_io`) see them like onnx2torch's own. `register` replaces an entry
onnx2torch already has (its Reshape refuses `allowzero=1`); importing this package registers
everything once. Every op here has an onnxruntime parity test (tests/converters/test_ops.py).

- reshape.py: Reshape at every version (allowzero as ONNX defines it)
- cast_like.py: CastLike (torch.onnx's default exporter with optimize=False)
- gelu.py: Gelu-20 (exact and tanh)
- reduce.py: Reduce*-18 (axes as an input) and ReduceMax/ReduceMin-20
- split.py: Split-18 (num_outputs)
- successors.py: newer versions whose schema only widened the types, mapped to onnx2torch's converter
- depth_to_space.py: DepthToSpace in DCR mode (tf2onnx's; onnx2torch takes CRD only)
- auto_pad.py: Conv/ConvTranspose/MaxPool/AveragePool with auto_pad SAME_*, and asymmetric pads onnx2torch refuses
  (wraps whatever converter is registered, so it is imported last)
"""
from __future__ import annotations

from collections.abc import Callable

from onnx import defs
from onnx2torch.node_converters import registry
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

Converter = Callable


def register(op_type: str, *versions: int, domain: str = defs.ONNX_DOMAIN) -> Callable[[Converter], Converter]:
    """Register `converter` for op_type at each schema version, replacing onnx2torch's entry if it has one."""
    def deco(converter: Converter) -> Converter:
        for version in versions:
            key = registry.OperationDescription(domain=domain, operation_type=op_type, version=version)
            registry._CONVERTER_REGISTRY.pop(key, None)  # onnx2torch's add_converter refuses a second entry
            registry.add_converter(operation_type=op_type, version=version, domain=domain)(converter)
        return converter
    return deco


def result(module, node, inputs: tuple[str, ...] | None = None) -> OperationConverterResult:
    """The converter result for a module reading `inputs` (default: all of the node's inputs)."""
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
        inputs=tuple(node.input_values if inputs is None else inputs), outputs=tuple(node.output_values)))


from converters.network.ops import cast_like, gelu, reduce, reshape, split, successors  # noqa: E402,F401  (they register)
from converters.network.ops import depth_to_space  # noqa: E402,F401
from converters.network.ops import auto_pad  # noqa: E402,F401  (last: it wraps the converters registered above)
