"""The `invert-onnx` command line: one subcommand per method, each parse -> method -> writer -> one line."""


def main(argv: list[str] | None = None) -> int:
    # imported on call: `python -m inverter.cli.main` then finds no half-imported module (runpy's warning
    # would be a second stderr line)
    from inverter.cli.main import main as run

    return run(argv)


__all__ = ["main"]
