"""The package's shape: every module imports on its own, imports form no cycle, only
``ragmem/memory/`` speaks SQL or reaches the docstore, and every data file ships."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ragmem"


def modules() -> dict[str, Path]:
    """``ragmem.memory.store`` -> its file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(path: Path, known: dict[str, Path],
                         type_checking: bool = True) -> set[str]:
    """The ragmem modules ``path`` depends on at module level, ``if TYPE_CHECKING:``
    included (a cycle there is still two modules that each need the other); imports
    inside functions are deferred on purpose (``import ragmem`` stays cheap)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if type_checking or not _type_checking_only(node):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in known else node.module)
    visit(ast.parse(path.read_text("utf-8")).body)
    return {m for m in found if m in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    known = modules()
    # The root package is the public facade: it names Assistant and Chat for type
    # checkers only and imports them on first use, so its TYPE_CHECKING lines are no
    # dependency (the stages import ragmem.__version__ from it).
    graph = {name: module_level_imports(path, known, type_checking=name != "ragmem") - {name}
             for name, path in known.items()}
    assert graph["ragmem.assistant"] >= {"ragmem.conversation", "ragmem.indexing"}
    assert find_cycle(graph) is None


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    # Deepest modules first: each is imported before anything that would pull it in
    # through another module, so a cycle that only works in one order shows.
    names = sorted(modules(), key=lambda n: (-n.count("."), n))
    code = ("import importlib, sys\nfor name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\nprint(len(sys.argv) - 1)")
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True,
                            text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(len(names))


def test_only_the_memory_package_speaks_sql_or_touches_the_docstore() -> None:
    offenders = []
    for name, path in modules().items():
        if name.startswith("ragmem.memory"):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"docstore", "conn", "execute",
                                                                  "executemany"}:
                offenders.append(f"{name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "Docstore":
                offenders.append(f"{name}:{node.lineno} Docstore(...)")
    assert offenders == []


def test_every_shipped_data_file_is_package_data() -> None:
    """A file under ragmem/data/ that no package-data glob names is missing from a
    wheel, and the answerer then fails to load its weights."""
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text("utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["ragmem"]
    for path in (PACKAGE / "data").iterdir():
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), f"{relative} is not package data"
