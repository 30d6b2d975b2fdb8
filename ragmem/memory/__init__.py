"""Long-term memory: window vectors in FAISS, their text and offsets in SQLite (the
default store, ``ragmem.memory.faiss``), or all of it in Milvus
(``ragmem.memory.milvus``), chosen per index; ``open_memory`` opens an index in the
store its manifest names, ``ragmem.memory.check`` checks it with that store's checker.

The SQLite docstore is the single source of truth, vectors included; the FAISS file
is a snapshot that is brought up to date from the docstore's change log on open.
That makes every write one SQLite transaction (atomic, crash-safe) whose cost grows
with the changed documents, not with the corpus.

``Memory`` (``ragmem.memory.base``) is the surface the rest of ragmem uses; only this
package speaks SQL.
"""

from ragmem.memory.base import Memory, MemoryInfo, MemoryWriter, StoredDocument
from ragmem.memory.faiss import LongTermMemory
from ragmem.memory.manifest import FORMAT_VERSION, Manifest
from ragmem.memory.opening import create_memory, drop_memory, open_memory

__all__ = ["FORMAT_VERSION", "LongTermMemory", "Manifest", "Memory", "MemoryInfo",
           "MemoryWriter", "StoredDocument", "create_memory", "drop_memory", "open_memory"]
