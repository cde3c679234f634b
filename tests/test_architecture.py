"""The floors of the package (docs/architecture.md), checked on the source's import statements.

Every ``import`` counts, including those inside functions and under ``TYPE_CHECKING``: a circle
that only a type hint closes is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "napari_uamc"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: Each floor may import only from the floors named here (and itself). Top-level modules
#: (errors, _atomic, _cache, _words) are the ground floor every wing may use.
GROUND = {"errors", "_atomic", "_cache", "_words"}
ALLOWED = {
    "data": {"data"} | GROUND,
    "engine": {"engine", "data"} | GROUND,
    "cli": {"cli", "engine", "data"} | GROUND,
    "_napari": {"_napari", "engine", "data"} | GROUND,
}
#: Third-party packages a floor must not import (data stays usable without torch or a GUI).
FORBIDDEN_THIRD_PARTY = {
    "data": {"torch", "napari", "qtpy", "magicgui"},
    "engine": {"napari", "qtpy", "magicgui"},
    "cli": {"napari", "qtpy", "magicgui"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SOURCE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path) if t in modules and t != name}
        # "from package import submodule" names the package too; the submodule is the edge
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") and o in targets for o in targets)}
    return graph


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_a_higher_floor():
    wrong = []
    for module, targets in _graph().items():
        floor = _floor(module)
        if floor not in ALLOWED:
            continue
        wrong += [f"{module} -> {t}" for t in sorted(targets)
                  if _floor(t) not in ALLOWED[floor] and t != PACKAGE]
    assert not wrong, "imports that go up a floor:\n" + "\n".join(wrong)


@pytest.mark.parametrize("floor", sorted(FORBIDDEN_THIRD_PARTY))
def test_lower_floors_do_not_import_gui_or_torch(floor):
    wrong = []
    for path in (SOURCE / floor).rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN_THIRD_PARTY[floor]:
                wrong.append(f"{_module_name(path)} imports {name}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_import_graph_has_no_circle():
    graph = _graph()
    circles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_checker_sees_a_circle_and_a_floor_violation(tmp_path, monkeypatch):
    """The checks above can fail: a planted circle and an upward import are both reported."""
    package = tmp_path / PACKAGE
    (package / "data").mkdir(parents=True)
    (package / "engine").mkdir()
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "engine" / "__init__.py").write_text("")
    (package / "data" / "a.py").write_text("from napari_uamc.engine import b\n")
    (package / "engine" / "b.py").write_text("from ..data import a\n")
    monkeypatch.setitem(globals(), "SOURCE", package)
    with pytest.raises(AssertionError, match="engine.b -> napari_uamc.data.a"):
        test_the_import_graph_has_no_circle()
    with pytest.raises(AssertionError, match="data.a -> napari_uamc.engine.b"):
        test_no_module_imports_a_higher_floor()


#: "About 600 lines a file, about 400 a class" (docs/architecture.md), with a little room.
MAX_FILE_LINES, MAX_CLASS_LINES = 650, 450


def test_no_file_or_class_outgrows_one_job():
    too_big = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            too_big.append(f"{_module_name(path)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    too_big.append(f"{_module_name(path)}.{node.name}: {length} lines")
    assert not too_big, "split these by job:\n" + "\n".join(too_big)
