"""Evaluation indexes: a dataset's documents indexed through the real API, built once.

An index lives under ``indexes/eval-<dataset>-<hash>``, where the hash names everything
that decides its contents: the embedder, the chunking, and each document's id and
content hash. Opening it again adds nothing (``Assistant.add_documents`` skips
unchanged documents by content hash), so an interrupted build resumes where it stopped.

    >>> beir_documents("scifact", {"4983": ("Title", "Text.")})[0].text
    'Title\\n\\nText.'
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmem.config import Config, indexes_home
from ragmem.types import Document

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.embedding import Embedder
    from ragmem.generation import Generator

# stage, done, total: called as work advances (the CLI draws a progress bar from it).
Progress = Callable[[str, int, int], None]


BUILD_RECORD = "eval-build.json"  # how long the build took, kept for later reports


@dataclass(frozen=True)
class IndexInfo:
    path: str
    built: bool  # False: every document was already indexed, nothing was embedded
    documents: int
    windows_added: int
    build_s: float
    earlier_build: dict[str, Any] | None = None  # the record of the run that built it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "documents": self.documents}
        if self.built:
            out |= {"built": True, **build_record(self)}
        else:
            out |= {"built": False, "note": "reused: built by an earlier run, nothing embedded",
                    "earlier_build": self.earlier_build}
        return out


def build_record(info: IndexInfo) -> dict[str, Any]:
    rate = info.windows_added / info.build_s if info.build_s > 0 else 0.0
    return {"build_s": round(info.build_s, 3), "windows": info.windows_added,
            "windows_per_s": round(rate, 2)}


def beir_documents(dataset: str, corpus: dict[str, tuple[str, str]]) -> list[Document]:
    """BEIR corpus entries as documents: ``title + "\\n\\n" + text`` (text alone if untitled)."""
    documents = []
    for doc_id, (title, text) in corpus.items():
        body = f"{title}\n\n{text}" if title else text
        documents.append(Document(doc_id=doc_id, path=f"{dataset}:{doc_id}", text=body,
                                  title=title,
                                  content_hash=hashlib.sha256(body.encode()).hexdigest()))
    return documents


def index_name(dataset: str, documents: Sequence[Document], embedder: str,
               chunking: dict[str, Any], store: str = "faiss") -> str:
    """``eval-scifact-1a2b3c4d5e``: the dataset slug and a hash of what the index holds
    (and where: a Milvus index is another index; FAISS names are as they always were)."""
    key: list[Any] = [embedder, chunking] if store == "faiss" else [embedder, chunking, store]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for doc in documents:
        digest.update(f"{doc.doc_id}\t{doc.content_hash}\n".encode())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.split("/")[0]).strip("-") or "dataset"
    return f"eval-{slug}-{digest.hexdigest()[:10]}"


def open_index(dataset: str, documents: Sequence[Document], config: Config, *,
               rebuild: bool = False, home: Path | None = None,
               embedder: Embedder | None = None, generator: Generator | None = None,
               progress: Progress | None = None) -> tuple[Assistant, IndexInfo]:
    """An assistant over ``documents``, indexed under ``indexes/eval-...`` unless already."""
    from ragmem.assistant import Assistant
    from ragmem.indexing import IndexProgress

    model = embedder.model_id if embedder is not None else config.embedder.model
    name = index_name(dataset, documents, model, vars(config.chunking), config.index.store)
    path = (home or indexes_home()) / name
    if rebuild and (path / "manifest.json").exists():
        from ragmem.memory import drop_memory

        drop_memory(path, config.milvus)  # a Milvus index's collections too
    elif rebuild and path.exists():
        shutil.rmtree(path)
    assistant = Assistant.create(path, config, embedder=embedder, generator=generator)

    def report(p: IndexProgress) -> None:
        if progress is not None:
            progress("index", p.files_done, p.files_total)

    known = assistant.memory.content_hashes()
    if all(known.get(d.doc_id) == d.content_hash for d in documents):
        # Nothing to add: don't take the writer lock, so runs can share a built index.
        record = path / BUILD_RECORD
        earlier = json.loads(record.read_text("utf-8")) if record.is_file() else None
        return assistant, IndexInfo(str(path), False, len(documents), 0, 0.0, earlier)
    stats = assistant.add_documents(_unique(documents), total=len(documents), progress=report)
    info = IndexInfo(str(path), True, len(documents), stats.windows, stats.seconds)
    if stats.unchanged == 0:  # a whole build, not the resumption of an interrupted one
        (path / BUILD_RECORD).write_text(json.dumps(build_record(info)) + "\n", "utf-8")
    return assistant, info


def _unique(documents: Iterable[Document]) -> Iterable[Document]:
    seen: set[str] = set()
    for doc in documents:
        if doc.doc_id not in seen:
            seen.add(doc.doc_id)
            yield doc
