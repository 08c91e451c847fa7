"""README's two commands are what CI runs, verbatim."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The indented `bash scripts/setup.sh && ...` lines of README.md, in order."""
    text = (ROOT / "README.md").read_text()
    return [m.strip() for m in re.findall(r"^ {4}(bash scripts/setup\.sh && .+)$", text, flags=re.M)]


def test_ci_runs_both_readme_commands_verbatim():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert any(c.endswith("invert-onnx demo") for c in commands)
    assert any("pytest" in c for c in commands)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in commands:
        assert command in ci_lines, f".ci/run does not run README's command {command!r}"
    assert "set -euo pipefail" in ci_lines  # a failing command fails CI
