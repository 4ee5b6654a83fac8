"""The layer rule of docs/DESIGN.md: a package imports only the packages above it."""
import ast
from pathlib import Path

import pytest

ORDER = ["data", "models", "metrics", "engine", "scoring", "surgery", "methods", "influence", "cluster", "report", "pipelines", "api", "cli"]
SRC = Path(__file__).resolve().parents[1] / "src" / "equiprune"


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_packages(path: Path) -> set[str]:
    pkg_depth = len(path.relative_to(SRC).parts) - 1  # how deep the module sits below equiprune/
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("equiprune."):
                out.add(node.module.split(".")[1])
            elif node.level > pkg_depth and node.module:  # climbs out of the module's own package
                out.add(node.module.split(".")[0])
            elif node.level > pkg_depth and not node.module:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("equiprune."))
    return out


MODULES = [p for p in SRC.rglob("*.py") if _package_of(p) in ORDER]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_layer_order(path):
    own = ORDER.index(_package_of(path))
    for pkg in _imported_packages(path):
        if pkg in ORDER:
            assert ORDER.index(pkg) <= own, f"{path.relative_to(SRC)} imports {pkg}, a layer below it"


def test_every_package_is_in_the_order():
    pkgs = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert pkgs <= set(ORDER), pkgs - set(ORDER)
