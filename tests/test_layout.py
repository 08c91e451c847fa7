"""The layout README's Layout section describes: what is installed, module sizes, import direction."""
import ast
import re
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("converters", "inverter", "models")


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def test_installed_packages_are_the_product_only():
    """pyproject's package list installs converters, inverter and models; never benchmarks, scripts or tests."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = find_packages(where=str(ROOT), include=include)
    assert {p.split(".")[0] for p in installed} == set(PRODUCT), installed
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".") for pkg in PRODUCT for p in _modules(pkg)
               if p.name == "__init__.py"}
    assert on_disk == set(installed), on_disk ^ set(installed)  # no folder left out of the install


def test_no_product_module_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in PRODUCT for p in _modules(pkg)
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def _imported_top_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_run_one_way():
    """converters never import inverter or models; models never import inverter; nothing installed
    imports benchmarks or scripts (DESIGN.md's flow)."""
    forbidden = {"converters": {"inverter", "models", "benchmarks", "scripts"},
                 "models": {"inverter", "benchmarks", "scripts"}, "inverter": {"benchmarks", "scripts"}}
    wrong = [(str(p.relative_to(ROOT)), sorted(_imported_top_packages(p) & bad))
             for pkg, bad in forbidden.items() for p in _modules(pkg) if _imported_top_packages(p) & bad]
    assert not wrong, wrong


def test_readme_layout_names_every_subpackage():
    section = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    for pkg in PRODUCT:
        for init in (ROOT / pkg).rglob("__init__.py"):
            folder = init.parent
            if folder.name == "__pycache__" or folder == ROOT / pkg:
                continue
            assert re.search(rf"\b{re.escape(folder.name)}/", section), f"README's Layout does not name {folder}"
