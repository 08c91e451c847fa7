"""`invert-onnx`: one subcommand per job; `invert-onnx MODEL.onnx --node ... --image ...` is `invert`.

A mistake the user can fix prints one line on stderr and exits 2; an internal error exits 1
with a short message (rerun with --debug for the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import warnings

from converters.errors import UserError, first_line
from converters.network.safe_names import printable
from inverter.cli.options import PROG, RECEIVED, Parser

# command -> module of inverter.cli; each has add_arguments(parser) and run(args) -> exit code
COMMANDS = ("invert", "nodes", "demo", "convert", "graph", "compare", "sweep", "visualize", "saliency", "fool",
            "style", "bench", "serve", "study")
DEFAULT_COMMAND = "invert"


def _module(name: str):
    return importlib.import_module(f"inverter.cli.{name}")


def build_parser() -> Parser:
    parser = Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="Invert CNN features at any named layer of any ONNX model (Mahendran & Vedaldi 2015).",
                    epilog=f"`{PROG} MODEL.onnx --node NAME --image IMG` runs `invert`. "
                           f"`{PROG} COMMAND --help` shows a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        module = _module(name)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def _forget_created() -> None:
    reports = sys.modules.get("inverter.io.reports")
    if reports is not None:
        reports.CREATED.clear()


def _remove_created() -> None:
    """A failed command leaves no output folder it made (partial results of Ctrl-C stay, marked)."""
    reports = sys.modules.get("inverter.io.reports")
    if reports is not None:
        reports.remove_created()


# SIGTERM (a batch scheduler, `timeout`, kill) and SIGHUP (a closed terminal) end a run as Ctrl-C does:
# the signal raises KeyboardInterrupt, so the step in progress ends, what was finished is written
# (atomically: never half a file) and the exit status is 128 + the signal's number (143, 129; 130 for Ctrl-C)
HANDLED_SIGNALS = ("SIGTERM", "SIGHUP")
_received = RECEIVED  # shared with options.interrupted() (this module may run as __main__)


def _interrupt(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _handle_signals() -> dict:
    """Install the handlers; returns the ones they replace (put back when `main` returns)."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # signal handlers can only be set in the main thread
    return {sig: signal.signal(sig, _interrupt) for sig in
            (getattr(signal, name) for name in HANDLED_SIGNALS if hasattr(signal, name))}


def _status(code: int) -> int:
    """130 (interrupted) becomes 128 + the number of the signal that interrupted the run."""
    return 128 + _received[-1] if code == 130 and _received else code


def main(argv: list[str] | None = None) -> int:
    _received.clear()
    before = _handle_signals()
    try:
        return _status(_main(argv))
    except OSError:  # after SIGHUP the terminal, and stderr with it, may be gone: the results are written
        if _received:
            return _status(130)
        raise
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=f"{PROG}: %(message)s")
    if not debug:
        warnings.filterwarnings("ignore")
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU machines
    try:
        parser = build_parser()
        if not argv:
            parser.print_help(sys.stderr)
            print(f"{PROG}: error: give a command, or MODEL.onnx --node NAME --image IMG", file=sys.stderr)
            return 2
        if argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
            argv = [DEFAULT_COMMAND] + argv
        args, extra = parser.parse_known_args(argv)
        if extra:  # a flag this command does not take (argparse's own message would point at the top-level help)
            raise UserError(f"{argv[0]} does not take {' '.join(extra)} (`{PROG} {argv[0]} --help` lists its options)")
        from inverter.cli.memory import keep_freed_memory

        keep_freed_memory()  # measured: batch 8 on VGG16-BN 5.2 -> 9.6 images/s
        if getattr(args, "quiet", False):
            logging.getLogger().setLevel(logging.ERROR)
        _forget_created()  # only this command's folders are ever removed
        code = args.run(args)
        _forget_created()
        return code
    except UserError as exc:
        _remove_created()
        print(f"{PROG}: error: {printable(exc)}", file=sys.stderr)  # names in it are untrusted: one visible line
        return 2
    except KeyboardInterrupt:
        how = f" by {signal.Signals(_received[-1]).name}" if _received else ""
        print(f"{PROG}: interrupted{how}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `invert-onnx nodes M | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # an internal error: short message, traceback on request
        _remove_created()
        if debug:
            raise
        print(f"{PROG}: internal error: {type(exc).__name__}: {printable(first_line(exc))} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
