"""Caffe's protobuf messages, built at run time (no compiled caffe.proto, no Caffe install).

The schema below restates the public field numbers, types, defaults and enums of Caffe's
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

log = logging.getLogger(__name__)
PACKAGE = "caffe"

# ----------------------------------------------------------------------------- the schema
# message -> ([(field, number, type, label, default)], {enum: [(value, number)]})
# type: a scalar name, a message name, or "enum:Message.Enum" / "enum:Enum" (package level).
# label: "opt", "rep" or "packed" (a packed repeated scalar).
ENGINE = [("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)]
_ENUMS = {"Phase": [("TRAIN", 0), ("TEST", 1)]}
_SCHEMA: dict[str, tuple[list[tuple], dict[str, list[tuple[str, int]]]]] = {
    "BlobShape": ([("dim", 1, "int64", "packed", None)], {}),
    "BlobProto": ([
        ("shape", 7, "BlobShape", "opt", None),
        ("data", 5, "float", "packed", None),
        ("diff", 6, "float", "packed", None),
        ("double_data", 8, "double", "packed", None),
        ("double_diff", 9, "double", "packed", None),
        ("num", 1, "int32", "opt", "0"),
        ("channels", 2, "int32", "opt", "0"),
        ("height", 3, "int32", "opt", "0"),
        ("width", 4, "int32", "opt", "0"),
    ], {}),
    "BlobProtoVector": ([("blobs", 1, "BlobProto", "rep", None)], {}),
    "FillerParameter": ([
        ("type", 1, "string", "opt", "constant"),
        ("value", 2, "float", "opt", "0"),
        ("min", 3, "float", "opt", "0"),
        ("max", 4, "float", "opt", "1"),
        ("mean", 5, "float", "opt", "0"),
        ("std", 6, "float", "opt", "1"),
        ("sparse", 7, "int32", "opt", "-1"),
        ("variance_norm", 8, "enum:FillerParameter.VarianceNorm", "opt", "FAN_IN"),
    ], {"VarianceNorm": [("FAN_IN", 0), ("FAN_OUT", 1), ("AVERAGE", 2)]}),
    "NetParameter": ([
        ("name", 1, "string", "opt", None),
        ("input", 3, "string", "rep", None),
        ("input_shape", 8, "BlobShape", "rep", None),
        ("input_dim", 4, "int32", "rep", None),
        ("force_backward", 5, "bool", "opt", "false"),
        ("state", 6, "NetState", "opt", None),
        ("debug_info", 7, "bool", "opt", "false"),
        ("layer", 100, "LayerParameter", "rep", None),
        ("layers", 2, "V1LayerParameter", "rep", None),
    ], {}),
    "NetState": ([
        ("phase", 1, "enum:Phase", "opt", "TEST"),
        ("level", 2, "int32", "opt", "0"),
        ("stage", 3, "string", "rep", None),
    ], {}),
    "NetStateRule": ([
        ("phase", 1, "enum:Phase", "opt", None),
        ("min_level", 2, "int32", "opt", None),
        ("max_level", 3, "int32", "opt", None),
        ("stage", 4, "string", "rep", None),
        ("not_stage", 5, "string", "rep", None),
    ], {}),
    "ParamSpec": ([
        ("name", 1, "string", "opt", None),
        ("share_mode", 2, "enum:ParamSpec.DimCheckMode", "opt", None),
        ("lr_mult", 3, "float", "opt", "1"),
        ("decay_mult", 4, "float", "opt", "1"),
    ], {"DimCheckMode": [("STRICT", 0), ("PERMISSIVE", 1)]}),
    "TransformationParameter": ([
        ("scale", 1, "float", "opt", "1"),
        ("mirror", 2, "bool", "opt", "false"),
        ("crop_size", 3, "uint32", "opt", "0"),
        ("mean_file", 4, "string", "opt", None),
        ("mean_value", 5, "float", "rep", None),
        ("force_color", 6, "bool", "opt", "false"),
        ("force_gray", 7, "bool", "opt", "false"),
    ], {}),
    "LossParameter": ([
        ("ignore_label", 1, "int32", "opt", None),
        ("normalization", 3, "enum:LossParameter.NormalizationMode", "opt", "VALID"),
        ("normalize", 2, "bool", "opt", None),
    ], {"NormalizationMode": [("FULL", 0), ("VALID", 1), ("BATCH_SIZE", 2), ("NONE", 3)]}),
    "AccuracyParameter": ([
        ("top_k", 1, "uint32", "opt", "1"),
        ("axis", 2, "int32", "opt", "1"),
        ("ignore_label", 3, "int32", "opt", None),
    ], {}),
    "ArgMaxParameter": ([
        ("out_max_val", 1, "bool", "opt", "false"),
        ("top_k", 2, "uint32", "opt", "1"),
        ("axis", 3, "int32", "opt", None),
    ], {}),
    "BatchNormParameter": ([
        ("use_global_stats", 1, "bool", "opt", None),
        ("moving_average_fraction", 2, "float", "opt", "0.999"),
        ("eps", 3, "float", "opt", "1e-5"),
    ], {}),
    "BiasParameter": ([
        ("axis", 1, "int32", "opt", "1"),
        ("num_axes", 2, "int32", "opt", "1"),
        ("filler", 3, "FillerParameter", "opt", None),
    ], {}),
    "ConcatParameter": ([
        ("axis", 2, "int32", "opt", "1"),
        ("concat_dim", 1, "uint32", "opt", "1"),
    ], {}),
    "ConvolutionParameter": ([
        ("num_output", 1, "uint32", "opt", None),
        ("bias_term", 2, "bool", "opt", "true"),
        ("pad", 3, "uint32", "rep", None),
        ("kernel_size", 4, "uint32", "rep", None),
        ("stride", 6, "uint32", "rep", None),
        ("dilation", 18, "uint32", "rep", None),
        ("pad_h", 9, "uint32", "opt", "0"),
        ("pad_w", 10, "uint32", "opt", "0"),
        ("kernel_h", 11, "uint32", "opt", None),
        ("kernel_w", 12, "uint32", "opt", None),
        ("stride_h", 13, "uint32", "opt", None),
        ("stride_w", 14, "uint32", "opt", None),
        ("group", 5, "uint32", "opt", "1"),
        ("weight_filler", 7, "FillerParameter", "opt", None),
        ("bias_filler", 8, "FillerParameter", "opt", None),
        ("engine", 15, "enum:ConvolutionParameter.Engine", "opt", "DEFAULT"),
        ("axis", 16, "int32", "opt", "1"),
        ("force_nd_im2col", 17, "bool", "opt", "false"),
    ], {"Engine": ENGINE}),
    "CropParameter": ([
        ("axis", 1, "int32", "opt", "2"),
        ("offset", 2, "uint32", "rep", None),
    ], {}),
    "DataParameter": ([
        ("source", 1, "string", "opt", None),
        ("batch_size", 4, "uint32", "opt", None),
        ("rand_skip", 7, "uint32", "opt", "0"),
        ("backend", 8, "enum:DataParameter.DB", "opt", "LEVELDB"),
        ("scale", 2, "float", "opt", "1"),
        ("mean_file", 3, "string", "opt", None),
        ("crop_size", 5, "uint32", "opt", "0"),
        ("mirror", 6, "bool", "opt", "false"),
        ("force_encoded_color", 9, "bool", "opt", "false"),
        ("prefetch", 10, "uint32", "opt", "4"),
    ], {"DB": [("LEVELDB", 0), ("LMDB", 1)]}),
    "DropoutParameter": ([("dropout_ratio", 1, "float", "opt", "0.5")], {}),
    "DummyDataParameter": ([
        ("data_filler", 1, "FillerParameter", "rep", None),
        ("shape", 6, "BlobShape", "rep", None),
        ("num", 2, "uint32", "rep", None),
        ("channels", 3, "uint32", "rep", None),
        ("height", 4, "uint32", "rep", None),
        ("width", 5, "uint32", "rep", None),
    ], {}),
    "EltwiseParameter": ([
        ("operation", 1, "enum:EltwiseParameter.EltwiseOp", "opt", "SUM"),
        ("coeff", 2, "float", "rep", None),
        ("stable_prod_grad", 3, "bool", "opt", "true"),
    ], {"EltwiseOp": [("PROD", 0), ("SUM", 1), ("MAX", 2)]}),
    "ELUParameter": ([("alpha", 1, "float", "opt", "1")], {}),
    "ExpParameter": ([
        ("base", 1, "float", "opt", "-1"),
        ("scale", 2, "float", "opt", "1"),
        ("shift", 3, "float", "opt", "0"),
    ], {}),
    "FlattenParameter": ([
        ("axis", 1, "int32", "opt", "1"),
        ("end_axis", 2, "int32", "opt", "-1"),
    ], {}),
    "ImageDataParameter": ([
        ("source", 1, "string", "opt", None),
        ("batch_size", 4, "uint32", "opt", "1"),
        ("rand_skip", 7, "uint32", "opt", "0"),
        ("shuffle", 8, "bool", "opt", "false"),
        ("new_height", 9, "uint32", "opt", "0"),
        ("new_width", 10, "uint32", "opt", "0"),
        ("is_color", 11, "bool", "opt", "true"),
        ("scale", 2, "float", "opt", "1"),
        ("mean_file", 3, "string", "opt", None),
        ("crop_size", 5, "uint32", "opt", "0"),
        ("mirror", 6, "bool", "opt", "false"),
        ("root_folder", 12, "string", "opt", ""),
    ], {}),
    "InnerProductParameter": ([
        ("num_output", 1, "uint32", "opt", None),
        ("bias_term", 2, "bool", "opt", "true"),
        ("weight_filler", 3, "FillerParameter", "opt", None),
        ("bias_filler", 4, "FillerParameter", "opt", None),
        ("axis", 5, "int32", "opt", "1"),
        ("transpose", 6, "bool", "opt", "false"),
    ], {}),
    "InputParameter": ([("shape", 1, "BlobShape", "rep", None)], {}),
    "LogParameter": ([
        ("base", 1, "float", "opt", "-1"),
        ("scale", 2, "float", "opt", "1"),
        ("shift", 3, "float", "opt", "0"),
    ], {}),
    "LRNParameter": ([
        ("local_size", 1, "uint32", "opt", "5"),
        ("alpha", 2, "float", "opt", "1"),
        ("beta", 3, "float", "opt", "0.75"),
        ("norm_region", 4, "enum:LRNParameter.NormRegion", "opt", "ACROSS_CHANNELS"),
        ("k", 5, "float", "opt", "1"),
        ("engine", 6, "enum:LRNParameter.Engine", "opt", "DEFAULT"),
    ], {"NormRegion": [("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)], "Engine": ENGINE}),
    "MemoryDataParameter": ([
        ("batch_size", 1, "uint32", "opt", None),
        ("channels", 2, "uint32", "opt", None),
        ("height", 3, "uint32", "opt", None),
        ("width", 4, "uint32", "opt", None),
    ], {}),
    "MVNParameter": ([
        ("normalize_variance", 1, "bool", "opt", "true"),
        ("across_channels", 2, "bool", "opt", "false"),
        ("eps", 3, "float", "opt", "1e-9"),
    ], {}),
    "ParameterParameter": ([("shape", 1, "BlobShape", "opt", None)], {}),
    "PoolingParameter": ([
        ("pool", 1, "enum:PoolingParameter.PoolMethod", "opt", "MAX"),
        ("pad", 4, "uint32", "opt", "0"),
        ("pad_h", 9, "uint32", "opt", "0"),
        ("pad_w", 10, "uint32", "opt", "0"),
        ("kernel_size", 2, "uint32", "opt", None),
        ("kernel_h", 5, "uint32", "opt", None),
        ("kernel_w", 6, "uint32", "opt", None),
        ("stride", 3, "uint32", "opt", "1"),
        ("stride_h", 7, "uint32", "opt", None),
        ("stride_w", 8, "uint32", "opt", None),
        ("engine", 11, "enum:PoolingParameter.Engine", "opt", "DEFAULT"),
        ("global_pooling", 12, "bool", "opt", "false"),
        ("round_mode", 13, "enum:PoolingParameter.RoundMode", "opt", "CEIL"),
    ], {"PoolMethod": [("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)], "Engine": ENGINE,
        "RoundMode": [("CEIL", 0), ("FLOOR", 1)]}),
    "PowerParameter": ([
        ("power", 1, "float", "opt", "1"),
        ("scale", 2, "float", "opt", "1"),
        ("shift", 3, "float", "opt", "0"),
    ], {}),
    "PReLUParameter": ([
        ("filler", 1, "FillerParameter", "opt", None),
        ("channel_shared", 2, "bool", "opt", "false"),
    ], {}),
    "PythonParameter": ([
        ("module", 1, "string", "opt", None),
        ("layer", 2, "string", "opt", None),
        ("param_str", 3, "string", "opt", ""),
        ("share_in_parallel", 4, "bool", "opt", "false"),
    ], {}),
    "ReductionParameter": ([
        ("operation", 1, "enum:ReductionParameter.ReductionOp", "opt", "SUM"),
        ("axis", 2, "int32", "opt", "0"),
        ("coeff", 3, "float", "opt", "1"),
    ], {"ReductionOp": [("SUM", 1), ("ASUM", 2), ("SUMSQ", 3), ("MEAN", 4)]}),
    "ReLUParameter": ([
        ("negative_slope", 1, "float", "opt", "0"),
        ("engine", 2, "enum:ReLUParameter.Engine", "opt", "DEFAULT"),
    ], {"Engine": ENGINE}),
    "ReshapeParameter": ([
        ("shape", 1, "BlobShape", "opt", None),
        ("axis", 2, "int32", "opt", "0"),
        ("num_axes", 3, "int32", "opt", "-1"),
    ], {}),
    "ScaleParameter": ([
        ("axis", 1, "int32", "opt", "1"),
        ("num_axes", 2, "int32", "opt", "1"),
        ("filler", 3, "FillerParameter", "opt", None),
        ("bias_term", 4, "bool", "opt", "false"),
        ("bias_filler", 5, "FillerParameter", "opt", None),
    ], {}),
    "SigmoidParameter": ([("engine", 1, "enum:SigmoidParameter.Engine", "opt", "DEFAULT")], {"Engine": ENGINE}),
    "SliceParameter": ([
        ("axis", 3, "int32", "opt", "1"),
        ("slice_point", 2, "uint32", "rep", None),
        ("slice_dim", 1, "uint32", "opt", "1"),
    ], {}),
    "SoftmaxParameter": ([
        ("engine", 1, "enum:SoftmaxParameter.Engine", "opt", "DEFAULT"),
        ("axis", 2, "int32", "opt", "1"),
    ], {"Engine": ENGINE}),
    "TanHParameter": ([("engine", 1, "enum:TanHParameter.Engine", "opt", "DEFAULT")], {"Engine": ENGINE}),
    "ThresholdParameter": ([("threshold", 1, "float", "opt", "0")], {}),
    "TileParameter": ([
        ("axis", 1, "int32", "opt", "1"),
        ("tiles", 2, "int32", "opt", None),
    ], {}),
}

# The layer-specific parameter fields: (field, LayerParameter number, V1 number or None, message)
LAYER_PARAMS = [
    ("transform_param", 100, 36, "TransformationParameter"),
    ("loss_param", 101, 42, "LossParameter"),
    ("accuracy_param", 102, 27, "AccuracyParameter"),
    ("argmax_param", 103, 23, "ArgMaxParameter"),
    ("batch_norm_param", 139, None, "BatchNormParameter"),
    ("bias_param", 141, None, "BiasParameter"),
    ("concat_param", 104, 9, "ConcatParameter"),
    ("convolution_param", 106, 10, "ConvolutionParameter"),
    ("crop_param", 144, None, "CropParameter"),
    ("data_param", 107, 11, "DataParameter"),
    ("dropout_param", 108, 12, "DropoutParameter"),
    ("dummy_data_param", 109, 26, "DummyDataParameter"),
    ("eltwise_param", 110, 24, "EltwiseParameter"),
    ("elu_param", 140, None, "ELUParameter"),
    ("exp_param", 111, 41, "ExpParameter"),
    ("flatten_param", 135, None, "FlattenParameter"),
    ("image_data_param", 115, 15, "ImageDataParameter"),
    ("inner_product_param", 117, 17, "InnerProductParameter"),
    ("input_param", 143, None, "InputParameter"),
    ("log_param", 134, None, "LogParameter"),
    ("lrn_param", 118, 18, "LRNParameter"),
    ("memory_data_param", 119, 22, "MemoryDataParameter"),
    ("mvn_param", 120, 34, "MVNParameter"),
    ("parameter_param", 145, None, "ParameterParameter"),
    ("pooling_param", 121, 19, "PoolingParameter"),
    ("power_param", 122, 21, "PowerParameter"),
    ("prelu_param", 131, None, "PReLUParameter"),
    ("python_param", 130, None, "PythonParameter"),
    ("reduction_param", 136, None, "ReductionParameter"),
    ("relu_param", 123, 30, "ReLUParameter"),
    ("reshape_param", 133, None, "ReshapeParameter"),
    ("scale_param", 142, None, "ScaleParameter"),
    ("sigmoid_param", 124, 38, "SigmoidParameter"),
    ("softmax_param", 125, 39, "SoftmaxParameter"),
    ("slice_param", 126, 31, "SliceParameter"),
    ("tanh_param", 127, 37, "TanHParameter"),
    ("threshold_param", 128, 25, "ThresholdParameter"),
    ("tile_param", 138, None, "TileParameter"),
]

_SCHEMA["LayerParameter"] = ([
    ("name", 1, "string", "opt", None),
    ("type", 2, "string", "opt", None),
    ("bottom", 3, "string", "rep", None),
    ("top", 4, "string", "rep", None),
    ("phase", 10, "enum:Phase", "opt", None),
    ("loss_weight", 5, "float", "rep", None),
    ("param", 6, "ParamSpec", "rep", None),
    ("blobs", 7, "BlobProto", "rep", None),
    ("propagate_down", 11, "bool", "rep", None),
    ("include", 8, "NetStateRule", "rep", None),
    ("exclude", 9, "NetStateRule", "rep", None),
    *[(field, number, message, "opt", None) for field, number, _, message in LAYER_PARAMS],
], {})

# V1 (`layers { type: CONVOLUTION ... }`): the enum value -> today's type string
V1_TYPES = {
    "NONE": ("", 0), "ABSVAL": ("AbsVal", 35), "ACCURACY": ("Accuracy", 1), "ARGMAX": ("ArgMax", 30),
    "BNLL": ("BNLL", 2), "CONCAT": ("Concat", 3), "CONTRASTIVE_LOSS": ("ContrastiveLoss", 37),
    "CONVOLUTION": ("Convolution", 4), "DATA": ("Data", 5), "DECONVOLUTION": ("Deconvolution", 39),
    "DROPOUT": ("Dropout", 6), "DUMMY_DATA": ("DummyData", 32), "EUCLIDEAN_LOSS": ("EuclideanLoss", 7),
    "ELTWISE": ("Eltwise", 25), "EXP": ("Exp", 38), "FLATTEN": ("Flatten", 8), "HDF5_DATA": ("HDF5Data", 9),
    "HDF5_OUTPUT": ("HDF5Output", 10), "HINGE_LOSS": ("HingeLoss", 28), "IM2COL": ("Im2col", 11),
    "IMAGE_DATA": ("ImageData", 12), "INFOGAIN_LOSS": ("InfogainLoss", 13),
    "INNER_PRODUCT": ("InnerProduct", 14), "LRN": ("LRN", 15), "MEMORY_DATA": ("MemoryData", 29),
    "MULTINOMIAL_LOGISTIC_LOSS": ("MultinomialLogisticLoss", 16), "MVN": ("MVN", 34),
    "POOLING": ("Pooling", 17), "POWER": ("Power", 26), "RELU": ("ReLU", 18), "SIGMOID": ("Sigmoid", 19),
    "SIGMOID_CROSS_ENTROPY_LOSS": ("SigmoidCrossEntropyLoss", 27), "SILENCE": ("Silence", 36),
    "SOFTMAX": ("Softmax", 20), "SOFTMAX_LOSS": ("SoftmaxWithLoss", 21), "SPLIT": ("Split", 22),
    "SLICE": ("Slice", 33), "TANH": ("TanH", 23), "WINDOW_DATA": ("WindowData", 24),
    "THRESHOLD": ("Threshold", 31),
}
_SCHEMA["V1LayerParameter"] = ([
    ("bottom", 2, "string", "rep", None),
    ("top", 3, "string", "rep", None),
    ("name", 4, "string", "opt", None),
    ("include", 32, "NetStateRule", "rep", None),
    ("exclude", 33, "NetStateRule", "rep", None),
    ("type", 5, "enum:V1LayerParameter.LayerType", "opt", None),
    ("blobs", 6, "BlobProto", "rep", None),
    ("param", 1001, "string", "rep", None),
    ("blob_share_mode", 1002, "enum:V1LayerParameter.DimCheckMode", "rep", None),
    ("blobs_lr", 7, "float", "rep", None),
    ("weight_decay", 8, "float", "rep", None),
    ("loss_weight", 35, "float", "rep", None),
    *[(field, v1, message, "opt", None) for field, _, v1, message in LAYER_PARAMS if v1 is not None],
], {"LayerType": [(name, number) for name, (_, number) in V1_TYPES.items()],
    "DimCheckMode": [("STRICT", 0), ("PERMISSIVE", 1)]})

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
    for enum_name, values in _ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for value, number in values:
            enum.value.add(name=value, number=number)
    fd = descriptor_pb2.FieldDescriptorProto
    for message_name, (fields, enums) in _SCHEMA.items():
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


def make_blob(array: np.ndarray) -> BlobProto:
    """A float blob with `shape.dim` (what current Caffe writes)."""
    array = np.asarray(array, dtype=np.float32)
    blob = BlobProto()
    blob.shape.dim.extend(int(d) for d in array.shape)
    # `data` (field 5) as one packed run of little-endian floats: far faster than extend()
    payload = array.astype("<f4").tobytes()
    blob.MergeFromString(bytes([5 << 3 | 2]) + _varint(len(payload)) + payload)
    return blob


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def to_text(net: NetParameter) -> str:
    """A NetParameter in prototxt form."""
    return text_format.MessageToString(net)
