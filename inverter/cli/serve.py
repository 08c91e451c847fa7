"""Explore models in the browser: the layer graph, click a node to invert it, watch it converge.

    invert-onnx serve MODEL.onnx [MODEL.onnx ...] [--port 8000] [--host 127.0.0.1]
    invert-onnx serve --demo        # the demo's VGG16 (HED weights)

The models are fixed at start; runs are cached on disk (--cache) so a node seen before is instant.
Binds to 127.0.0.1 unless --host says otherwise. Ctrl-C stops it.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from converters.errors import UserError
from inverter.cli.options import BadValue, add_common, add_input_spec_options, nonnegative_int, positive_int

DEFAULT_CACHE = Path.home() / ".cache" / "invert-onnx" / "explorer"


def port(text: str) -> int:
    value = nonnegative_int(text)
    if value > 65535:
        raise BadValue(f"expected a port 0..65535, not {text!r}")
    return value


def add_arguments(p) -> None:
    p.add_argument("models", type=Path, nargs="*", metavar="MODEL", help="the .onnx files to explore (fixed at start)")
    p.add_argument("--demo", action="store_true", help="serve the demo's model (VGG16 with HED's weights)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--cache", type=Path, default=None, help=f"folder of finished runs (default: {DEFAULT_CACHE})")
    p.add_argument("--queue", type=positive_int, default=8, help="runs that may wait at once (default 8)")
    p.add_argument("--device", default="cpu", help="where runs go: cpu, cuda, cuda:N, mps (default cpu)")
    add_common(p)
    add_input_spec_options(p)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def demo_model() -> Path:
    """The demo's model, exported once into the cache (what `invert-onnx demo` inverts)."""
    from models import export
    from models.weights import shipped

    shipped("hed")
    path = Path.home() / ".cache" / "invert-onnx" / "demo" / "vgg16_hed.onnx"
    if not path.is_file():
        export("vgg16_hed", path)
    return path


def run(args) -> int:
    import importlib.util

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise UserError("the explorer needs FastAPI and uvicorn: pip install fastapi uvicorn")
    from inverter.config import check_device

    check_device(args.device)
    paths = list(args.models) + ([demo_model()] if args.demo else [])
    if not paths:
        raise UserError("give the model(s) to explore: invert-onnx serve MODEL.onnx (or --demo)")
    return serve(args, paths)


def serve(args, paths: list[Path]) -> int:
    import uvicorn

    from inverter.cli.options import load_network
    from inverter.explorer.app import create_app
    from inverter.explorer.runs import Explorer

    networks = [(p, load_network(args, path=p)) for p in paths]
    explorer = Explorer(networks, args.cache or DEFAULT_CACHE, max_queue=args.queue, device=args.device)
    app = None
    try:
        app = create_app(explorer, host=args.host)
        sock = bind(args.host, args.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"invert-onnx explorer on http://{shown}:{port}/  ({len(paths)} model(s); Ctrl-C stops it)",
              flush=True)
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"note: listening on {host}: whoever reaches this machine can start runs", file=sys.stderr)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="off")
        server = uvicorn.Server(config)
        stop = server.handle_exit

        def handle_exit(sig, frame) -> None:  # Ctrl-C: the run under way and the open streams end at once
            explorer.closing.set()
            stop(sig, frame)

        server.handle_exit = handle_exit
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down: the normal way to stop
            pass
    finally:
        explorer.close()
        if app is not None:
            app.state.netron.stop()
    print("invert-onnx explorer stopped", flush=True)
    return 0
