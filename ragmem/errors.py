"""Errors users can catch. Each message is one line: what was wrong and how to fix it."""


class RagmemError(Exception):
    """Base class of every error ragmem raises on purpose."""


class DocumentError(RagmemError):
    """A source file could not be read as a document."""


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
