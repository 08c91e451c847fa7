"""Canonical ResNet names found by walking the graph, as He et al. and Caffe's ResNets name them.

`conv1` (the stem's conv, BN, ReLU) and `pool1`; one name per residual block, `res2a` ... `res5c`
(block output: after the add and its ReLU), `res2` ... `res5` for the last block of each stage,
`pool5` and `fc`. A stage with more than six blocks numbers them after the first, as Caffe's
ResNet-101/152 do (`res4a`, `res4b1` ... `res4b22`). Parts: `res3b.branch2a` ... `.branch2c` (each
conv of the residual branch with its BN and ReLU; `.conv`, `.bn`, `.relu` within it),
`res3b.branch1` (the projection shortcut, `.conv`, `.bn`), `res3b.shortcut` (what the add takes
from the shortcut: the projection, or the block's input), `res3b.add`, `res3b.relu`.

A block is an add of two branches that start from one tensor (the fork): the residual branch
holds two or three convs, the shortcut none or one. A stage starts at the first block and at each
block with a projection shortcut. The scheme applies to ResNets only: a conv stem and a max pool
before the first block, and every two-input add in the trunk a residual block (MobileNet's and
EfficientNet's inverted residuals have no max-pool stem; Inception and DenseNet merge by Concat).
Basic blocks (ResNet-18/34), bottlenecks (ResNet-50/101/152, 1-by-2 widths) and BN folded by the
exporter all give the same names, so a name means the same tensor in every framework's export.
"""
from __future__ import annotations

from string import ascii_lowercase

from converters.network.chains import FC_OPS, follow_chain, name_chain
from converters.network.edges import consumers

POOL5_OPS = ("GlobalAveragePool", "AveragePool", "ReduceMean")


def resnet_aliases(nodes: list, initializers: set[str]) -> dict[str, str]:
    """{canonical name: node name} for a ResNet, else {}."""
    readers = consumers(nodes)
    producer = {t: n for n in nodes for t in n.outputs}
    constants = set(initializers) | {t for n in nodes if n.op_type == "Constant" for t in n.outputs}

    def live(n: NodeInfo) -> list[str]:
        return [t for t in n.inputs if t and t not in constants]

    adds = [n for n in nodes if n.op_type in ("Add", "Sum") and len(live(n)) == 2]
    convs = [n for n in nodes if n.op_type == "Conv"]
    if not adds or not convs:
        return {}
    first_add = adds[0].index
    if any(n.op_type == "Concat" and len(live(n)) > 1 for n in nodes[:adds[-1].index]):
        return {}
    stem = follow_chain(convs[0], readers, constants=constants)
    pool1 = stem[-1]
    while pool1 is not None and pool1.op_type != "MaxPool":  # through a Pad (Keras' ZeroPadding2D)
        after = readers.get(pool1.outputs[0], [])
        pool1 = after[0] if len(after) == 1 and after[0].op_type in ("Pad", "MaxPool") else None
    if pool1 is None or pool1.index > first_add:
        return {}

    def walk(tensor: str) -> tuple[str, list]:
        """Back from an add's input to the fork: (the fork tensor, the branch's nodes in forward order)."""
        path: list = []
        while len(readers.get(tensor, [])) < 2 and tensor in producer:
            node = producer[tensor]
            ins = live(node)
            if len(ins) != 1:
                break
            path.append(node)
            tensor = ins[0]
        return tensor, path[::-1]

    blocks = []  # (add, residual path, shortcut path, shortcut tensor)
    for add in adds:
        (fa, pa), (fb, pb) = (walk(t) for t in live(add))
        if fa != fb:
            return {}
        ca, cb = (sum(n.op_type == "Conv" for n in p) for p in (pa, pb))
        (res, c_res), (short, c_short), shortcut = ((pa, ca), (pb, cb), live(add)[1]) if ca >= cb else \
            ((pb, cb), (pa, ca), live(add)[0])
        if c_res < 2 or c_short > 1:
            return {}
        blocks.append((add, res, short, shortcut))

    names: dict[str, str] = {}
    name_chain(names, "conv1", stem, "conv", "relu1")
    names["pool1"] = pool1.name
    stages: list[list] = []
    for k, block in enumerate(blocks):
        if k == 0 or any(n.op_type == "Conv" for n in block[2]):
            stages.append([])
        stages[-1].append(block)
    for s, stage in enumerate(stages, 2):
        for b, (add, res, short, shortcut) in enumerate(stage):
            label = ascii_lowercase[b] if len(stage) <= 6 else ("a" if b == 0 else f"b{b}")
            base = f"res{s}{label}"
            after = readers.get(add.outputs[0], [])
            out = after[0] if len(after) == 1 and after[0].op_type == "Relu" else add
            names[base] = out.name
            names[f"{base}.add"] = add.name
            if out is not add:
                names[f"{base}.relu"] = out.name
            branch_convs = [i for i, n in enumerate(res) if n.op_type == "Conv"]
            for j, start in enumerate(branch_convs):
                stop = branch_convs[j + 1] if j + 1 < len(branch_convs) else len(res)
                name_chain(names, f"{base}.branch2{ascii_lowercase[j]}", res[start:stop], "conv")
            if short:
                name_chain(names, f"{base}.branch1", short, "conv")
            if shortcut in producer:
                names[f"{base}.shortcut"] = producer[shortcut].name
        names[f"res{s}"] = names[f"res{s}{'a' if len(stage) == 1 else label}"]
    tail = next(n for n in nodes if n.name == names[f"res{len(stages) + 1}"])
    while tail is not None:  # pool5 and fc, through layout ops (Flatten, Reshape, Transpose)
        nxt = readers.get(tail.outputs[0], [])
        tail = nxt[0] if len(nxt) == 1 else None
        if tail is not None and tail.op_type in POOL5_OPS:
            names["pool5"] = tail.name
        if tail is not None and tail.op_type in FC_OPS:
            name_chain(names, "fc", follow_chain(tail, readers, constants=constants), "fc")
            break
    return names
