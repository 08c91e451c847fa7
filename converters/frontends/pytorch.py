"""PyTorch -> ONNX with module paths in node names and BatchNorm nodes kept addressable."""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from converters.frontends.atomic_output import save_onnx
from converters.frontends.cleanup import set_input_spec
from converters.network.normalise import drop_weight_identities
from converters.errors import ConversionError, first_line
from converters.input_spec import InputSpec
from converters.network.onnx_io import OPSET

log = logging.getLogger(__name__)


def export_module(module: nn.Module, path: str | Path, *, size: tuple[int, int] = (224, 224),
                  input_spec: InputSpec | None = None, opset: int = OPSET) -> Path:
    """Export an eval-mode module to ONNX (legacy exporter: node names keep module paths,
    `/layer2/layer2.1/conv1/Conv`; TrainingMode.PRESERVE without constant folding: BN stays
    a BatchNormalization node instead of being folded into the Conv before it)."""
    path = Path(path)
    try:
        module = module.eval()
    except NotImplementedError:  # torch.export's module keeps the mode it was exported in
        pass
    spec = (input_spec or InputSpec()).with_size(*size)
    x = torch.zeros(1, 3, *size) if spec.layout == "NCHW" else torch.zeros(1, *size, 3)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    except Exception as exc:
        raise ConversionError(f"torch.onnx could not export {type(module).__name__}: "
                              f"{first_line(exc)}") from None
    model = onnx.load_from_string(buffer.getvalue())
    model = drop_weight_identities(model)
    model = set_input_spec(model, spec)
    model.producer_name = "invert-onnx (torch.onnx)"
    onnx.checker.check_model(model)
    save_onnx(model, path)
    log.info("exported %s to %s (%d nodes)", type(module).__name__, path, len(model.graph.node))
    return path


def is_torchscript(path: str | Path) -> bool:
    """A TorchScript archive is a zip holding code/ and constants; a state_dict zip holds data.pkl only."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def torchscript_to_onnx(path: str | Path, out_path: str | Path, *, size: tuple[int, int] = (224, 224),
                        input_spec: InputSpec | None = None, opset: int = OPSET) -> Path:
    """A TorchScript file (torch.jit.save) -> ONNX. TorchScript is TorchScript IR, not pickled Python."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"TorchScript file not found: {path}")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ConversionError(f"{path} is not a loadable TorchScript file ({type(exc).__name__}); "
                              "save it with torch.jit.save, or give a state_dict with --arch") from None
    return export_module(module, out_path, size=size, input_spec=input_spec, opset=opset)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a .pth/.pt file, read with weights_only=True: no code runs."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"weights file not found: {path}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"{path} is not a state_dict readable without running code "
                              f"({type(exc).__name__}); save it with torch.save(model.state_dict())") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} does not hold a state_dict (a dict of tensors)")
    return state


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str = "the weights") -> nn.Module:
    """Load a state_dict strictly, with an error that names what does not fit."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((l.strip() for l in str(exc).splitlines() if "size mismatch" in l), "shape mismatch")
        raise ConversionError(f"{source} do not fit {type(module).__name__}: {detail}; check the "
                              "architecture (--arch)") from None
    if missing or unexpected:
        raise ConversionError(f"{source} do not fit {type(module).__name__}: missing keys {missing[:3]}, "
                              f"unexpected keys {unexpected[:3]}; check the architecture (--arch)")
    return module.eval()


def state_dict_to_onnx(path: str | Path, architecture: nn.Module, out_path: str | Path, *,
                       size: tuple[int, int] = (224, 224), input_spec: InputSpec | None = None,
                       opset: int = OPSET) -> Path:
    """A state_dict file loaded into `architecture` (an nn.Module instance), exported to ONNX."""
    module = load_weights(architecture, read_state_dict(path), str(path))
    return export_module(module, out_path, size=size, input_spec=input_spec, opset=opset)


def torch_export_to_onnx(path: str | Path, out_path: str | Path, *, size: tuple[int, int] | None = None,
                         input_spec: InputSpec | None = None, opset: int = OPSET) -> Path:
    """A torch.export archive (.pt2, torch.export.save) -> ONNX. The archive holds a serialized graph and its
    weights, no pickled Python; its module runs at the size it was exported with unless the export left it dynamic."""
    path = Path(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ConversionError(f"{path} is not a loadable torch.export archive ({first_line(exc)}); "
                              "save it with torch.export.save") from None
    example = getattr(program, "example_inputs", None)
    args = example[0] if example else ()
    if size is None:
        size = tuple(args[0].shape[-2:]) if args and getattr(args[0], "dim", lambda: 0)() == 4 else (224, 224)
    return export_module(program.module(), out_path, size=size, input_spec=input_spec, opset=opset)


def architecture_from_name(name: str) -> nn.Module:
    """`package.module:Class` -> Class() imported by name from the user's environment (the user's own code, never
    anything read from the model file)."""
    import importlib

    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConversionError(f"--arch {name!r}: give package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConversionError(f"--arch {name!r}: cannot import {module_name} ({first_line(exc)}); "
                              "install it or add its folder to PYTHONPATH") from None
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConversionError(f"--arch {name!r}: {module_name} has no {attr}")
    try:
        built = target()
    except TypeError as exc:
        raise ConversionError(f"--arch {name!r}: {attr}() needs arguments ({first_line(exc)}); "
                              "give a function or class that builds the model with no arguments") from None
    if not isinstance(built, nn.Module):
        raise ConversionError(f"--arch {name!r}: {attr}() returned a {type(built).__name__}, not an nn.Module")
    return built
