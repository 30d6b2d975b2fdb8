"""Which files a run reads: the supported files under the paths given, once each, in a
stable order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ragmem.errors import DocumentError

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")


def discover(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """``(root, file)`` pairs for the supported files under ``paths``, in a stable order.

    A folder is walked recursively, skipping hidden entries; a file is its own root's
    child, so ``discover(["a/b.md"]) == [(Path("a"), Path("a/b.md"))]``.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[str] = set()
    for path in paths:
        for root, file in discover_one(Path(path)):
            if (key := identity(file)) not in seen:
                seen.add(key)
                found.append((root, file))
    return found


def identity(file: Path) -> str:
    """One key for one file under any name: symlinks and ``..`` resolved."""
    # realpath, not Path.resolve(): resolve() raises on a symlink loop, realpath does not
    # (the loop is reported when the file is read).
    return os.path.realpath(file)


def discover_one(path: Path) -> list[tuple[Path, Path]]:
    if not path.is_dir():  # a file, or a pipe, device or broken link: read_file judges
        if not os.path.lexists(path):
            raise DocumentError(path, "no such file or folder; check the path and try again")
        if path.suffix.lower() not in SUFFIXES:
            raise DocumentError(path, unsupported(path.suffix) + "; convert it to one of "
                                "these first")
        return [(path.parent, path)]
    files: list[Path] = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(
            Path(folder, n) for n in names
            if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES
        )
    return [(path, f) for f in sorted(files, key=lambda f: f.relative_to(path).parts)]


def unsupported(suffix: str) -> str:
    return f"unsupported file type {suffix!r}; supported: {' '.join(SUFFIXES)}"
