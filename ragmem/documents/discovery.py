"""Which files a run reads: the supported files under the paths given, once each, in a
stable order; and the id each file's document gets.

**The id rule.** A file's ``doc_id`` is its path relative to the folder given
(``notes/`` -> ``guide/intro.md``), unless another file holds that id: then the id takes
as many of the folders above as make it unique (``A/x.txt`` and ``B/x.txt`` indexed
together are ``x.txt`` and ``B/x.txt``). An id is held by a stored document whose file
is still there (or that is not a file's: a .jsonl record, a document added from
memory), or by a file met earlier in the same run; a stored document whose file is gone
gives its id up, so a moved folder keeps its ids. A file the index already holds (by
its stored absolute path) keeps its id, whichever folder names it, so re-indexing is an
update and an index built before this rule keeps its ids. The id is expressed by the
``root`` that ``discover`` pairs a file with: ``relative_id(root, file)``. A .jsonl's
records keep the ids they give.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ragmem.errors import DocumentError

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")


def discover(paths: Sequence[str | Path],
             stored: Mapping[str, str] | None = None) -> list[tuple[Path, Path]]:
    """``(root, file)`` pairs for the supported files under ``paths``, in a stable order;
    ``relative_id(root, file)`` is the file's ``doc_id``, apart from the ids of the
    index's ``stored`` documents (``doc_id -> path``) and of each other (see above).

    A folder is walked recursively, skipping hidden entries; a file is its own root's
    child, so ``discover(["a/b.md"]) == [(Path("a"), Path("a/b.md"))]``.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[str] = set()
    names = Names(stored or {})
    for path in paths:
        for root, file in discover_one(Path(path)):
            if (key := identity(file)) not in seen:
                seen.add(key)
                found.append((names.root(root, file), file))
    return found


def relative_id(root: Path, file: Path) -> str:
    """The ``doc_id`` of ``file`` found under ``root``: its path from there, in POSIX
    form (``relative_id(Path("a"), Path("a/b/c.md")) == "b/c.md"``)."""
    return Path(os.path.abspath(file)).relative_to(os.path.abspath(root)).as_posix()


class Names:
    """The roots that keep the ids of one run's files apart from each other and from
    the ``stored`` documents' (``doc_id -> path``): the id rule above."""

    def __init__(self, stored: Mapping[str, str]) -> None:
        self.stored = stored
        # A file document's path -> its id: how a file the index holds keeps its id.
        self.ids = {path: doc_id for doc_id, path in stored.items() if _is_file_doc(path)}
        self.claimed: set[str] = set()

    def root(self, root: Path, file: Path) -> Path:
        """The root that gives ``file`` its id: ``root``, or a folder above it."""
        if file.suffix.lower() == ".jsonl":  # its records carry their own ids
            return root
        full = os.path.abspath(file)
        kept = self.ids.get(full)
        if kept is not None and full.endswith(os.sep + kept):
            self.claimed.add(kept)
            return root if relative_id(root, file) == kept else \
                Path(full[:-len(kept)] or os.sep)
        for candidate in _roots(root):
            doc_id = relative_id(candidate, file)
            if self._free(doc_id, full):
                self.claimed.add(doc_id)
                return candidate
        # Every folder up to / is held: only by .jsonl records that use paths as ids.
        # The file then replaces the document of its plain id, as any id's file does.
        return root

    def _free(self, doc_id: str, full: str) -> bool:
        if doc_id in self.claimed:
            return False
        holder = self.stored.get(doc_id)
        if holder is None or holder == full:
            return True
        if not _is_file_doc(holder):
            return False
        # A holder that is this file under another name (a linked folder) is this file;
        # one whose file is gone gives its id up (a moved or renamed folder).
        return not os.path.lexists(holder) or identity(Path(holder)) == identity(Path(full))


def _is_file_doc(path: str) -> bool:
    """A document read from a file of its own (not a .jsonl record, not added from
    memory with a path that is no file's)."""
    return os.path.isabs(path) and not path.lower().endswith(".jsonl")


def _roots(root: Path) -> Iterable[Path]:
    """``root``, then each folder above it up to /: the roots an id may be taken from,
    shortest id first."""
    yield root
    yield from Path(os.path.abspath(root)).parents


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
