"""Caffe's protobuf messages, built at run time (no compiled caffe.proto, no Caffe install).

The schema (`schema.py`) restates the public field numbers, types, defaults and enums of Caffe's
`caffe` package for the messages a deploy net and its weights use: NetParameter (both the
`layer` list, field 100, and the old V1 `layers` list, field 2, plus the old `input:` /
`input_dim:` / `input_shape` net inputs), LayerParameter, V1LayerParameter, BlobProto,
BlobShape and the *Parameter messages of the layers. A prototxt is read with
`google.protobuf.text_format` (data only, nothing executes) and a caffemodel with
`ParseFromString`. V1 layers are upgraded to LayerParameter so one converter reads both.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from converters.errors import ConversionError, first_line
from converters.frontends.caffe.schema import ENUMS, LAYER_PARAMS, PACKAGE, SCHEMA, V1_TYPES

__all__ = ["BlobProto", "BlobShape", "LayerParameter", "NetParameter", "V1LayerParameter", "V1_TYPES",
           "blob_array", "message_class", "read_caffemodel", "read_prototxt", "upgrade"]

log = logging.getLogger(__name__)

_SCALARS = {
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="invert_onnx_caffe.proto", package=PACKAGE, syntax="proto2")
    for enum_name, values in ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for value, number in values:
            enum.value.add(name=value, number=number)
    fd = descriptor_pb2.FieldDescriptorProto
    for message_name, (fields, enums) in SCHEMA.items():
        message = fdp.message_type.add(name=message_name)
        for enum_name, values in enums.items():
            enum = message.enum_type.add(name=enum_name)
            for value, number in values:
                enum.value.add(name=value, number=number)
        for name, number, kind, label, default in fields:
            field = message.field.add(name=name, number=number)
            field.label = fd.LABEL_OPTIONAL if label == "opt" else fd.LABEL_REPEATED
            if label == "packed":
                field.options.packed = True
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind.startswith("enum:"):
                field.type = fd.TYPE_ENUM
                field.type_name = f".{PACKAGE}.{kind[5:]}"
            else:
                field.type = fd.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
            if default is not None:
                field.default_value = default
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def message_class(name: str):
    """The generated class of one Caffe message (`message_class("PoolingParameter")`)."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


NetParameter = message_class("NetParameter")
LayerParameter = message_class("LayerParameter")
V1LayerParameter = message_class("V1LayerParameter")
BlobProto = message_class("BlobProto")
BlobShape = message_class("BlobShape")


# ----------------------------------------------------------------------------- reading
def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ConversionError(f"Caffe {what} not found: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"cannot read the Caffe {what} {path}: {exc.strerror or exc}") from None


def read_prototxt(path: str | Path) -> NetParameter:
    """A net definition (text format) -> NetParameter with V1 layers upgraded to `layer`."""
    path = Path(path)
    data = _read_bytes(path, "prototxt")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConversionError(f"{path} is not a text prototxt (binary data: is it the caffemodel? "
                              "pass the deploy .prototxt first, then the .caffemodel)") from None
    net = NetParameter()
    try:
        text_format.Parse(text, net)
    except RecursionError:
        raise ConversionError(f"{path} nests its messages too deeply to be a Caffe prototxt; "
                              "check the file") from None
    except text_format.ParseError as exc:
        if "no field named" not in str(exc):
            raise ConversionError(f"{path} is not a valid Caffe prototxt: {first_line(exc)}") from None
        # A field of a Caffe fork (or of a newer Caffe) that the net does not need: skip it.
        net = NetParameter()
        try:
            text_format.Parse(text, net, allow_unknown_field=True)
        except RecursionError:
            raise ConversionError(f"{path} nests its messages too deeply to be a Caffe prototxt; "
                                  "check the file") from None
        except text_format.ParseError as exc2:
            raise ConversionError(f"{path} is not a valid Caffe prototxt: {first_line(exc2)}") from None
        log.warning("%s: skipped fields this reader does not know (first: %s)", path, first_line(exc))
    if not net.layer and not net.layers:
        raise ConversionError(f"{path} defines no layers: is it a Caffe deploy prototxt?")
    return upgrade(net, source=str(path))


def read_caffemodel(path: str | Path) -> NetParameter:
    """Trained weights (binary NetParameter) -> NetParameter with V1 layers upgraded to `layer`."""
    path = Path(path)
    data = _read_bytes(path, "caffemodel")
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ConversionError(f"{path} is not a readable caffemodel (truncated or corrupt: "
                              f"{first_line(exc) or type(exc).__name__}); download or copy it again") from None
    if not net.layer and not net.layers:
        raise ConversionError(f"{path} holds no layers: it is empty, truncated, or not a caffemodel")
    return upgrade(net, source=str(path))




def upgrade(net: NetParameter, source: str = "net") -> NetParameter:
    """Move V1 `layers` entries into `layer` (type enum -> type string; same parameter messages)."""
    if not net.layers:
        return net
    if net.layer:
        raise ConversionError(f"{source} mixes `layer` and the old `layers` lists; use one of them")
    v1_enum = V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    params = [field for field, _, v1, _ in LAYER_PARAMS if v1 is not None]
    for old in net.layers:
        new = net.layer.add()
        new.name = old.name
        new.type = V1_TYPES[v1_enum.values_by_number[old.type].name][0] if old.HasField("type") else ""
        new.bottom.extend(old.bottom)
        new.top.extend(old.top)
        new.include.extend(old.include)
        new.exclude.extend(old.exclude)
        new.blobs.extend(old.blobs)
        new.loss_weight.extend(old.loss_weight)
        for field in params:
            if old.HasField(field):
                getattr(new, field).CopyFrom(getattr(old, field))
    del net.layers[:]
    return net


# ----------------------------------------------------------------------------- blobs
def blob_array(blob: BlobProto) -> np.ndarray:
    """A blob's values with its shape (`shape.dim`, or the old num/channels/height/width)."""
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(v) for v in (blob.num, blob.channels, blob.height, blob.width))
        if values.size and int(np.prod(shape)) != values.size:
            shape = (values.size,)  # legacy blobs written without their dimensions
    if int(np.prod(shape)) != values.size:
        raise ConversionError(f"a weight blob of shape {shape} holds {values.size} values "
                              "(the caffemodel is truncated or corrupt)")
    return values.reshape(shape)
