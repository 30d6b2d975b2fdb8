"""ragmem: a retrieval-augmented long-document assistant with a vector memory.

    >>> from ragmem import Assistant
    >>> assistant = Assistant.open("indexes/demo")          # doctest: +SKIP
    >>> answer = assistant.ask("Who is Irene Adler?")        # doctest: +SKIP
    >>> print(answer.text, answer.citations[0].path)         # doctest: +SKIP

Importing ragmem is cheap: models load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragmem.config import Config
from ragmem.errors import RagmemError
from ragmem.types import Answer, Citation, Document, Hit, Passage, Sentence, Window

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.conversation import Chat

__version__ = "0.1.0"
__all__ = [
    "Answer",
    "Assistant",
    "Chat",
    "Citation",
    "Config",
    "Document",
    "Hit",
    "Passage",
    "RagmemError",
    "Sentence",
    "Window",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Assistant pulls in torch-free code only, but keep `import ragmem` minimal anyway.
    if name == "Assistant":
        from ragmem.assistant import Assistant

        return Assistant
    if name == "Chat":
        from ragmem.conversation import Chat

        return Chat
    raise AttributeError(f"module 'ragmem' has no attribute {name!r}")
