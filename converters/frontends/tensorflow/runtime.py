"""Importing TensorFlow and tf2onnx quietly, and the context managers a tf2onnx run needs.

TensorFlow is an optional extra: it is imported inside functions only, with its log noise
turned down (TF_CPP_MIN_LOG_LEVEL=3, TF_ENABLE_ONEDNN_OPTS=0 unless set).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from converters.errors import ConversionError

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
INSTALL = "pip install 'invert-onnx[tensorflow]' (tensorflow-cpu and tf2onnx)"


def prepare_tensorflow_import() -> None:
    """Call before the first `import tensorflow`: quiet logs, and torchvision loaded first.

    torchvision imports triton (through torch._dynamo), and loading triton's library after
    TensorFlow's crashes the process (segmentation fault, measured with tensorflow-cpu 2.21 and
    the registry's torch); the other order is fine. onnx2torch needs torchvision anyway.
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules:
        with contextlib.suppress(ImportError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchvision  # noqa: F401


def import_tensorflow():
    """`tensorflow` and `tf2onnx`, imported quietly; a clear error when the extra is missing."""
    prepare_tensorflow_import()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tensorflow as tf
            import tf2onnx
    except ImportError as exc:
        raise ConversionError(f"TensorFlow models need the TensorFlow extra: {INSTALL} ({exc})") from None
    tf.get_logger().setLevel(logging.ERROR)
    return tf, tf2onnx


class _Failures(logging.Handler):
    """Collects the node conversions tf2onnx reports as failed (it logs them and carries on,
    sometimes leaving a half-rewritten graph behind)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Failed to convert node"):
            self.messages.append(message.splitlines()[0])


@contextlib.contextmanager
def quiet():
    """tf2onnx logs every step and TF warns about deprecations: nothing of it reaches the user;
    the failures tf2onnx reports are collected and yielded."""
    failures = _Failures()
    tf2onnx_log = logging.getLogger("tf2onnx")
    tf_log = logging.getLogger("tensorflow")
    saved = (tf2onnx_log.level, tf2onnx_log.propagate, tf_log.level)
    tf2onnx_log.setLevel(logging.ERROR)
    tf2onnx_log.propagate = False
    tf2onnx_log.addHandler(failures)
    tf_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield failures
    finally:
        tf2onnx_log.removeHandler(failures)
        tf2onnx_log.setLevel(saved[0])
        tf2onnx_log.propagate = saved[1]
        tf_log.setLevel(saved[2])


@contextlib.contextmanager
def layers_kept(enabled: bool = True):
    """Run grappler without constant folding while tf2onnx freezes the graph.

    Grappler's constant folding multiplies a following BatchNormalization into the Conv
    kernel, so neither the Conv output nor the BN node is left to address. tf2onnx calls
    `tensorflow.python.grappler.tf_optimizer.OptimizeGraph(config, meta_graph)`; the wrapper
    drops "constfold" from the optimizers listed in that config and changes nothing else.
    """
    if not enabled:
        yield
        return
    from tensorflow.python.grappler import tf_optimizer

    original = tf_optimizer.OptimizeGraph

    def optimize_graph(config_proto, metagraph, *args, **kwargs):
        rewrite = config_proto.graph_options.rewrite_options
        kept = [o for o in rewrite.optimizers if o != "constfold"]
        del rewrite.optimizers[:]
        rewrite.optimizers.extend(kept)
        return original(config_proto, metagraph, *args, **kwargs)

    tf_optimizer.OptimizeGraph = optimize_graph
    try:
        yield
    finally:
        tf_optimizer.OptimizeGraph = original
