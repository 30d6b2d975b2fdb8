"""Errors users can catch. Each message is one line: what was wrong and how to fix it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Fix:
    """What would fix an error, as data: the library says it in Python terms
    (``str(error)``), the command line as the command to run (``ragmem.cli``).

    ``action``: "repair" (rebuild the derived files from the docstore), "repair_with"
    (the same, naming the embedder that built the index), "build" (no index there yet),
    "embedder" (open the index with the embedder that built it, ``detail``).
    """

    action: Literal["repair", "repair_with", "build", "embedder"]
    index: str
    detail: str = ""

    def in_python(self) -> str:
        if self.action == "repair":
            return f"repair it: ragmem.memory.check.repair(Path({self.index!r}))"
        if self.action == "repair_with":
            return ("repair it with the embedder that built it: ragmem.memory.check.repair("
                    f"Path({self.index!r}), embedder)")
        if self.action == "build":
            return f"build one: Assistant.create({self.index!r}).index([...])"
        return (f"open it with embedder {self.detail!r} (or name none), or create a new "
                "index for another embedder")


class RagmemError(Exception):
    """Base class of every error ragmem raises on purpose.

    ``problem`` is what went wrong; ``fix``, when there is one, how to put it right,
    which each interface words its own way (the message carries the Python wording).
    """

    def __init__(self, problem: str = "", fix: Fix | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix.in_python()}" if fix else problem)


class DocumentError(RagmemError):
    """A source file, or one record of it, could not be read as a document.

    ``where`` is the file (``path:line`` for one record of a .jsonl) and ``reason``
    the rest of the message, so a caller can print the path once.
    """

    def __init__(self, where: object, reason: str) -> None:
        self.where = str(where)
        self.reason = reason
        super().__init__(f"{self.where}: {reason}")

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, str]]:
        return type(self), (self.where, self.reason)


class IndexNotFoundError(RagmemError):
    """No index at the given name or path."""


class IndexMismatchError(RagmemError):
    """The index was built with another embedder, or by a newer ragmem."""


class IndexCorruptError(RagmemError):
    """The files of an index disagree with each other or with their checksums."""


class IndexLockedError(RagmemError):
    """Another process is writing to the index."""


class StoreError(RagmemError):
    """An index's external store (Milvus) is missing its package, cannot be reached, or
    refused a request."""


class ModelError(RagmemError):
    """A model could not be found or loaded."""


class QuestionError(RagmemError):
    """The question cannot be answered as asked (empty, say)."""


class ConfigError(RagmemError):
    """A configuration value, key or environment variable is not valid."""


class EngineError(RagmemError):
    """An indexing engine could not run: Ray is not installed, will not start, or its
    cluster cannot be reached."""


def debugging() -> bool:
    """``RAGMEM_DEBUG=1``: an unexpected error goes on with its traceback, instead of
    becoming one line (a command's failure, or a file skipped)."""
    return os.environ.get("RAGMEM_DEBUG", "").lower() in {"1", "true", "yes", "on"}
