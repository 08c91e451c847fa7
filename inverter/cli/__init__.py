"""The `invert-onnx` command line (inverter.cli.main): one module per subcommand, each
parse -> method -> writer -> one line."""
