"""The Milvus long-term memory (``--store milvus``): the same ``Memory`` surface as the
FAISS store, kept in Milvus collections (pip install 'ragmem[scale]').

Importing this package does not import pymilvus; opening a memory does.
"""

from ragmem.memory.milvus.store import MilvusMemory
from ragmem.memory.milvus.writing import MilvusWriter

__all__ = ["MilvusMemory", "MilvusWriter"]
