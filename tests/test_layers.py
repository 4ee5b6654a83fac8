"""The layer rule of docs/DESIGN.md: a package imports only the packages above it; no modules import each
other in a circle."""
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(["equiprune", *(parts[:-1] if parts[-1] == "__init__" else parts)])


MODULE_NAMES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imported_modules(name: str, path: Path) -> set[str]:
    """equiprune modules `name` imports (function-level imports too), each resolved to its file's module.

    ``from .pkg import thing`` counts as an import of ``pkg.thing`` when that is
    a module, else of ``pkg`` (its __init__).
    """
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULE_NAMES else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
    out = set()
    for t in targets:
        while t not in MODULE_NAMES and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in MODULE_NAMES and t != name:
            out.add(t)
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_between_modules():
    graph = {name: _imported_modules(name, path) for name, path in MODULE_NAMES.items()}
    assert _circles(graph) == [], "modules that import each other (directly or through others)"


def test_circle_detection_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    path = SRC / "methods" / "runs.py"
    assert "equiprune.models.trigger" in _imported_modules("equiprune.methods.runs", path)


# Names a CLI module may import from the layers below api: settings and constants it builds from the
# arguments, and text formatters for what it prints. Work (a method, a report) goes through `equiprune.api`.
CLI_HELPERS = {"default_finetune", "default_finetune_for_table", "default_scp_for_table", "describe_row", "null_check_text",
               "format_terminal", "format_scores_terminal", "format_paired_terminal", "audit_cell", "column_choices", "trim_findings",
               # the mitigation registry, which the options and settings of `train`/`mitigate` come from
               "methods", "get_method", "method_fields", "config_from_options", "default_mitigation_train",
               # the training recipes, likewise settings of `train`
               "format_settings", "get_recipe", "resolve_settings", "with_weights_preprocessing"}


def _is_setting(name: str) -> bool:
    return name.isupper() or name in CLI_HELPERS or (name[:1].isupper() and not name.startswith("_"))


@pytest.mark.parametrize("path", sorted((SRC / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_calls_methods_and_reports_only_through_api(path):
    below = {"methods", "report", "pipelines", "influence", "scoring", "surgery"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 2:
            if node.module.split(".")[0] in below:
                work = [a.name for a in node.names if not _is_setting(a.name)]
                assert not work, f"cli/{path.name} imports {work} from {node.module}; call a function of api"
