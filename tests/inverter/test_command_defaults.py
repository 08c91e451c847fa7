"""Each command's defaults mean one thing: visualize and style weigh the plain TV sum, so their defaults are the
settings of the README figure each made (scripts/figures.py reads the same constants), not the inversion's
normalised-prior weight (3e-3 there would be 30x and 3,000x too strong: issue 19)."""
import ast
from pathlib import Path

from inverter import InversionConfig
from inverter.cli.main import build_parser
from inverter.cli.options import config_from
from inverter.presets import STYLE_DEFAULTS, STYLE_WEIGHT, VISUALIZE_DEFAULTS

FIGURES = Path(__file__).parents[2] / "scripts" / "figures.py"


def parsed(*argv):
    return build_parser().parse_args(list(argv))


def test_visualize_defaults_are_the_figure_settings():
    config = config_from(parsed("visualize", "m.onnx", "--node", "conv4_1", "--channel", "12"))
    assert {k: getattr(config, k) for k in VISUALIZE_DEFAULTS} == VISUALIZE_DEFAULTS
    assert config.lambda_tv == 1e-4 != InversionConfig().lambda_tv  # the plain TV weight of the figure
    assert config_from(parsed("visualize", "m.onnx", "--lambda-tv", "0")).lambda_tv == 0  # a typed flag wins


def test_style_defaults_are_the_figure_settings():
    args = parsed("style", "m.onnx", "--content", "a.jpg", "--style", "b.jpg", "--style-node", "conv1_1")
    config = config_from(args)
    assert {k: getattr(config, k) for k in STYLE_DEFAULTS} == STYLE_DEFAULTS and args.style_weight == STYLE_WEIGHT
    assert config.lambda_tv == 1e-6


def test_the_figures_script_uses_the_same_constants():
    """The README's figures are made with exactly these defaults: figures.py names the constants, and passes no
    literal lambda_tv, lr or style weight of its own to visualize or style_transfer."""
    tree = ast.parse(FIGURES.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"VISUALIZE_DEFAULTS", "STYLE_DEFAULTS", "STYLE_WEIGHT"} <= names
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in
                 ("visualize", "style_transfer")):
        literal = [k.arg for k in call.keywords if k.arg in ("style_weight",) and isinstance(k.value, ast.Constant)]
        assert not literal, literal
