"""Graph rewrites inside a cut: the speed options of `Network` (its module docstring).

Folding uses torch's own `fuse_conv_bn_eval`; the in-place ReLU rewrite is ours.
"""
from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Modules whose backward pass does not use their own output: a ReLU may overwrite it.
_INPLACE_SAFE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear, nn.MaxPool1d, nn.MaxPool2d,
                 nn.MaxPool3d)
_CONV_BN = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


def fold_batchnorm(cut: fx.GraphModule) -> None:
    """Conv -> BN (the Conv's output used by the BN only) becomes one folded Conv."""
    modules = dict(cut.named_modules())
    for node in list(cut.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if bn is None or type(bn) not in _CONV_BN.values() or bn.training or not bn.track_running_stats:
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        conv = modules.get(prev.target)
        if _CONV_BN.get(type(conv)) is not type(bn) or len(node.args) != 1 or node.kwargs:
            continue
        name = f"{prev.target}+folded"
        cut.add_submodule(name, fuse_conv_bn_eval(conv, bn))
        prev.target = name
        node.replace_all_uses_with(prev)
        cut.graph.erase_node(node)

def inplace_relu(cut: fx.GraphModule) -> None:
    """A ReLU whose input feeds nothing else, made by an op whose backward does not read its
    own output, runs in place (one tensor less to allocate and keep for backward)."""
    modules = dict(cut.named_modules())
    for node in list(cut.graph.nodes):
        relu = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(relu, nn.ReLU) or relu.inplace or len(node.args) != 1:
            continue
        prev = node.args[0]
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        producer = modules.get(prev.target)
        additive = getattr(producer, "math_op_function", None) in (torch.add, torch.sub)  # onnx2torch Add/Sub
        if not (isinstance(producer, _INPLACE_SAFE) or additive):
            continue
        with cut.graph.inserting_after(node):
            new = cut.graph.call_function(torch.relu_, (prev,))
        node.replace_all_uses_with(new)
        cut.graph.erase_node(node)
