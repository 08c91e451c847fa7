"""The exceptions a user can cause. The CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """Something the user can fix: the message says what to do."""


class ModelError(UserError):
    """A model file is missing, unreadable, corrupt, or uses something we cannot convert."""


class NodeError(UserError):
    """A node name that does not resolve (unknown or ambiguous)."""


class ConversionError(UserError):
    """A source model (Caffe, TensorFlow, PyTorch) cannot be exported to ONNX."""


def unsupported_ops(nodes, what: str, fix: str) -> str:
    """One line naming the first unsupported node and its op type, and the other op types."""
    first = nodes[0]
    others = sorted({n.op_type for n in nodes} - {first.op_type})
    more = f" and {len(others)} more op type(s): {', '.join(others)}" if others else ""
    return f"unsupported {what} {first.op_type} (node {first.name!r}){more}; {fix}"


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (or its type name when it has none)."""
    text = str(exc).strip()
    if not text:
        return "" if isinstance(exc, str) else type(exc).__name__
    return text.splitlines()[0][:limit]
