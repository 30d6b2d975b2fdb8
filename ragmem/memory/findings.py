"""What a check found, whichever store it checked: problems (and whether ``repair`` can
fix them all), what was checked, and notes on what was brought up to date. Each store's
checker (``ragmem.memory.faiss.check``, ``ragmem.memory.milvus.check``) gathers its
``Findings``; ``ragmem.memory.check`` picks the checker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragmem.errors import ModelError
from ragmem.memory.manifest import Manifest

if TYPE_CHECKING:
    from ragmem.embedding import Embedder


@dataclass(frozen=True)
class CheckReport:
    path: str
    problems: tuple[str, ...]
    repairable: bool  # every problem can be fixed by `repair` without the source files
    checked: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what was brought up to date on the way (not problems)

    @property
    def ok(self) -> bool:
        return not self.problems


class Findings:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked: list[str] = []
        self.notes: list[str] = []
        self.repairable = True

    def problem(self, text: str, *, repairable: bool = True) -> None:
        self.problems.append(text)
        self.repairable &= repairable

    def report(self, directory: Path) -> CheckReport:
        return CheckReport(str(directory), tuple(self.problems), self.repairable,
                           tuple(self.checked), tuple(self.notes))


def check_embedder(manifest: Manifest, embedder: Embedder | None, found: Findings) -> None:
    """The embedder the manifest names must load here, offline, with the same dimension."""
    if embedder is None:
        from ragmem.embedding import SentenceTransformerEmbedder
        from ragmem.models import require_local

        try:
            require_local(manifest.embedder, "embedder")
        except ModelError as exc:
            found.problem(f"embedder: {exc}", repairable=False)
            return
        embedder = SentenceTransformerEmbedder(manifest.embedder)
    try:
        dim = embedder.dim
    except ModelError as exc:
        found.problem(f"embedder: {exc}", repairable=False)
        return
    if embedder.model_id != manifest.embedder or dim != manifest.dim:
        found.problem(
            f"embedder {embedder.model_id} gives {dim}-dimensional vectors; the index was "
            f"built with {manifest.embedder}, {manifest.dim}-dimensional: install that "
            "model, or index the sources again into a new index", repairable=False)
    found.checked.append(f"embedder {manifest.embedder} ({dim} dims)")
