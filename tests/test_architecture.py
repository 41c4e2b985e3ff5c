"""The package's shape: imports point one way, and a rule lives in one place.

The import graph is read from the source (every ``import`` statement,
including those inside functions, which only delay a cycle), so a cycle is
found whether or not the code that closes it runs.
"""

import ast
import pathlib
import re

import pytest

from nbadam import rules

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nbadam"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The nbadam modules that module ``name`` imports (outside ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and "TYPE_CHECKING" in ast.unparse(block.test)
               for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if not base.startswith("nbadam"):
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    found.discard(name)
    return found


def _cycles() -> list[list[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_no_import_cycles():
    assert _cycles() == []


def test_the_cycle_finder_can_fail(tmp_path, monkeypatch):
    """Control: two modules that import each other are reported."""
    package = tmp_path / "nbadam"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    assert _cycles() == [["nbadam.a", "nbadam.b", "nbadam.a"]]


@pytest.mark.parametrize("name", [name for name in rules.names() if name != "adam"])
def test_a_rule_is_named_in_at_most_four_package_files(name):
    """Its family module, the registry, its optimizer class and the public exports.

    ``adam`` is left out: it is also the family's name and every entry point's default.
    """
    pattern = re.compile(rf"\b{name}\b", re.IGNORECASE)
    files = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                   if pattern.search(path.read_text()))
    assert len(files) <= 4, files
