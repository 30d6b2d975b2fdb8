"""The package's shape: every module imports on its own, imports form no cycle (those
inside functions included), no module is over 400 lines, the assistant knows neither the
chat nor the Ray engine, only ``ragmem/memory/`` speaks SQL or reaches the docstore, and
every data file ships."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ragmem"


def modules() -> dict[str, Path]:
    """``ragmem.memory.faiss.store`` -> its file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(node: ast.stmt, known: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        out = set()
        for alias in node.names:
            submodule = f"{node.module}.{alias.name}"
            out.add(submodule if submodule in known else node.module)
        return out
    return set()


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every ragmem module ``path`` imports, wherever the import stands: at module level,
    under ``if TYPE_CHECKING:``, or inside a function (deferred so that ``import
    ragmem`` stays cheap, but a dependency all the same)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _imported(node, known)
    return {m for m in found if m in known}


def module_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The ragmem modules ``path`` imports when it is imported itself: module level, not
    under ``if TYPE_CHECKING:``, not inside a function."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _type_checking_only(node):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            else:
                found.update(_imported(node, known))
    visit(ast.parse(path.read_text("utf-8")).body)
    return {m for m in found if m in known}


@cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports. The root package is the public facade: it names
    ``Assistant`` and ``Chat`` for type checkers and imports them on first use (the
    stages import ``ragmem.__version__`` from it), so only what it imports at once
    counts for it."""
    known = modules()
    return {name: (module_level_imports(path, known) if name == "ragmem"
                   else imports(path, known)) - {name}
            for name, path in known.items()}


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
    graph = import_graph()
    assert graph["ragmem.generation.factory"] >= {"ragmem.generation.causal",
                                                  "ragmem.generation.llamacpp"}  # seen
    assert find_cycle(graph) is None


def test_imports_inside_functions_are_seen(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ragmem.conversation import Chat\n")
    assert imports(module, modules()) == {"ragmem.conversation"}
    assert module_level_imports(module, modules()) == set()


def test_the_assistant_knows_neither_chat_nor_ray() -> None:
    """Chat composes the assistant's pipeline from outside, and the ingest engine is
    picked by name inside ``ragmem.indexing``."""
    graph = import_graph()
    assert not {m for m in graph["ragmem.assistant"]
                if m.startswith(("ragmem.conversation", "ragmem.distributed"))}
    assert "ragmem.assistant" in graph["ragmem.conversation"]  # the arrow points this way


def test_sql_text_is_recognised() -> None:
    assert SQL.match("SELECT COUNT(*) FROM windows") and SQL.match("PRAGMA integrity_check")
    assert not SQL.match("Select the best passages from the buffer.")  # prose


def test_no_module_is_over_400_lines() -> None:
    """A module over 400 lines holds two jobs: split it by job (STYLE.md)."""
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text("utf-8").splitlines())) > 400}
    assert long == {}


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    # Deepest modules first: each is imported before anything that would pull it in
    # through another module, so a cycle that only works in one order shows.
    # ``__main__`` modules run their command when imported: that is what they are for.
    names = sorted((n for n in modules() if not n.endswith(".__main__")),
                   key=lambda n: (-n.count("."), n))
    code = ("import importlib, sys\nfor name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\nprint(len(sys.argv) - 1)")
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True,
                            text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(len(names))


SQL = re.compile(r"^\s*(SELECT\b.*\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b"
                 r"|DELETE\s+FROM\b|CREATE\s+(VIRTUAL\s+)?(TABLE|INDEX)\b|PRAGMA\s+\w+)",
                 re.S)  # ragmem writes SQL keywords in capitals


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
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and SQL.match(node.value):
                offenders.append(f"{name}:{node.lineno} SQL text")
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
