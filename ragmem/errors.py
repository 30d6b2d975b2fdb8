"""Errors users can catch. Each message is one line: what was wrong and how to fix it."""

from __future__ import annotations


class RagmemError(Exception):
    """Base class of every error ragmem raises on purpose."""


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


class ModelError(RagmemError):
    """A model could not be found or loaded."""


class QuestionError(RagmemError):
    """The question cannot be answered as asked (empty, say)."""


class ConfigError(RagmemError):
    """A configuration value, key or environment variable is not valid."""
