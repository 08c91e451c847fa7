"""The exceptions a user can cause. The CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """Something the user can fix: the message says what to do."""


class ModelError(UserError):
    """A model file is missing, unreadable, corrupt, or uses something we cannot convert."""


class NodeError(UserError):
    """A node name that does not resolve (unknown or ambiguous)."""


class ConversionError(UserError):
    """A source model (Caffe, TensorFlow, PyTorch) cannot be exported to ONNX."""
