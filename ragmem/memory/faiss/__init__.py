"""The default long-term memory: window vectors in FAISS, their text, offsets and vectors
in a SQLite docstore, all in the index folder (``store``: the layout). The Milvus store
(``ragmem.memory.milvus``) is built the same way: ``store`` and ``check`` beside the
pieces they use.
"""

from ragmem.memory.faiss.store import LongTermMemory

__all__ = ["LongTermMemory"]
