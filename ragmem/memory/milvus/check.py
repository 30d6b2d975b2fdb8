"""``ragmem check`` for a Milvus index: what can be verified from outside Milvus.

- the manifest, and Milvus's copy of its fixed part (written at creation): the same
  embedder and dimension; the collections exist and hold vectors of that dimension;
- every window and every piece (text, sentences, headings) belongs to a document with
  a header row, and each header's counts match the rows there are: a write cut short
  (see ``ragmem.memory.milvus.store``) leaves rows without a header;
- window spans lie inside their document's text;
- the manifest's counts (a copy) agree with the headers;
- the embedder the manifest names loads here, with the same dimension.

``repair`` deletes rows without a header, removes documents whose rows disagree with
their header (a torn write: index their sources again to restore them), writes a lost
copy of the manifest into Milvus, rebuilds a lost manifest from that copy when the
index's milvus-lite folder is in the index folder, and compacts the windows (so that
keyword scores count only live rows; a server is asked to). Milvus's own storage is Milvus's to
check; this finds what ragmem's writes can leave behind.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragmem.config import MilvusConfig
from ragmem.errors import IndexCorruptError, IndexLockedError, IndexNotFoundError, RagmemError
from ragmem.memory.findings import CheckReport, Findings, check_embedder
from ragmem.memory.folder import write_lock
from ragmem.memory.manifest import (
    MANIFEST,
    Manifest,
    manifest_from_json,
    read_manifest,
    write_manifest,
)
from ragmem.memory.milvus.client import LITE_FILE, Client
from ragmem.memory.milvus.expressions import doc_ids_expression, quote
from ragmem.memory.milvus.store import MilvusMemory

if TYPE_CHECKING:
    from ragmem.embedding import Embedder

_KINDS = {"text": "n_text", "sent": "n_sent", "sect": "n_sect"}


def check(directory: Path, embedder: Embedder | None = None,
          milvus: MilvusConfig | None = None) -> CheckReport:
    found = Findings()
    manifest = _manifest(directory, milvus, found)
    if manifest is None:
        return found.report(directory)
    try:
        memory = MilvusMemory.connect(directory, manifest, milvus)
    except RagmemError as exc:
        found.problem(exc.problem, repairable=False)  # the caller words the fix
        return found.report(directory)
    try:
        found.checked.append("milvus collections")
        _check_meta(memory, found)
        _check_rows(memory, found)
        if "manifest" in found.checked:
            _reconcile_counts(memory, found)
    finally:
        memory.close()
    check_embedder(manifest, embedder, found)
    return found.report(directory)


def _manifest(directory: Path, milvus: MilvusConfig | None,
              found: Findings) -> Manifest | None:
    try:
        manifest = read_manifest(directory)
    except (IndexCorruptError, IndexNotFoundError) as exc:
        copy = _lost_manifest(directory, milvus)
        found.problem(exc.problem, repairable=copy is not None)
        return copy
    found.checked.append("manifest")
    return manifest


def _lost_manifest(directory: Path, milvus: MilvusConfig | None) -> Manifest | None:
    """A lost manifest, from the copy in the index's own milvus-lite folder (a server
    index without its manifest cannot be found again from the folder alone)."""
    lite = directory / LITE_FILE
    if not lite.is_dir():
        return None
    config = replace(milvus or MilvusConfig(), uri=None)
    client = Client(str(lite), config)
    try:
        bases = [n[:-len("_documents")] for n in client.list_collections()
                 if n.endswith("_documents")]
        copies = []
        for base in bases:
            rows = client.query(f"{base}_documents", 'pk == "#meta#0"', ["body"])
            if rows:
                copies.append(manifest_from_json(rows[0]["body"]))
    finally:
        client.close()
    return copies[0] if len(copies) == 1 else None


def _check_meta(memory: MilvusMemory, found: Findings) -> None:
    meta = memory.meta()
    if meta is None:
        found.problem(f"Milvus holds no copy of the manifest (collection "
                      f"{memory.names.documents})")
    elif (meta.embedder, meta.dim) != (memory.manifest.embedder, memory.manifest.dim):
        found.problem(f"the manifest says embedder {memory.manifest.embedder} "
                      f"({memory.manifest.dim} dims) and Milvus's copy {meta.embedder} "
                      f"({meta.dim} dims): the manifest belongs to another index; index the "
                      "sources again into a new index", repairable=False)
    found.checked.append("manifest copy in milvus")


def rows_without_header(memory: MilvusMemory) -> tuple[set[str], set[str], int]:
    """(doc ids with rows but no header, doc ids whose rows disagree with their header,
    windows whose span lies outside their document)."""
    headers = {str(r["doc_id"]): r for r in memory.headers()}
    client, names = memory.client, memory.names
    windows: dict[str, list[int]] = defaultdict(list)
    bad_span = 0
    for r in client.scan(names.windows, "", ["doc_id", "idx", "char_start", "char_end"]):
        doc_id = str(r["doc_id"])
        windows[doc_id].append(int(r["idx"]))
        head = headers.get(doc_id)
        start, end = int(r["char_start"]), int(r["char_end"])
        if head is not None and (start < 0 or end > int(head["n_chars"]) or start >= end):
            bad_span += 1
    parts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in client.scan(names.documents, 'kind in ["text", "sent", "sect"]',
                         ["doc_id", "kind"]):
        parts[str(r["doc_id"])][str(r["kind"])] += 1
    orphans = (set(windows) | set(parts)) - set(headers)
    torn = {doc_id for doc_id, head in headers.items()
            if sorted(windows.get(doc_id, [])) != list(range(int(head["n_windows"])))
            or any(parts[doc_id][kind] != int(head[field]) for kind, field in _KINDS.items())}
    return orphans, torn, bad_span


def _check_rows(memory: MilvusMemory, found: Findings) -> None:
    orphans, torn, bad_span = rows_without_header(memory)
    if orphans:
        found.problem(f"{len(orphans)} documents have rows but no header (writes cut short: "
                      f"{_few(orphans)})")
    if torn:
        found.problem(f"{len(torn)} documents have rows that disagree with their header "
                      f"({_few(torn)}); repair removes them, index their sources again")
    found.checked.append("windows and pieces == headers")
    if bad_span:
        found.problem(f"{bad_span} windows with spans outside their document; index the "
                      "sources again into a new index", repairable=False)
    found.checked.append("window spans")


def _reconcile_counts(memory: MilvusMemory, found: Findings) -> None:
    """The manifest's counts are a copy: a write cut short after its rows leaves them
    behind, and they are brought up to date here."""
    counts = memory.counts()
    found.checked.append("counts")
    if memory.manifest.counts == counts:
        return
    try:
        with write_lock(memory.directory):
            current = read_manifest(memory.directory)
            write_manifest(memory.directory, replace(current, counts=counts))
            found.notes.append(f"manifest counts {memory.manifest.counts} brought up to date "
                               f"with Milvus's {counts}")
    except IndexLockedError:
        found.notes.append("a writer is running: the manifest's counts catch up when it ends")


def repair(directory: Path, embedder: Embedder | None = None, *,
           embedder_name: str | None = None, milvus: MilvusConfig | None = None
           ) -> CheckReport:
    """Put right what ``check`` reports as repairable (see the module docstring), then
    check again. ``embedder_name`` is unused (Milvus's copy of the manifest names the
    embedder): every checker takes the same arguments."""
    notes: list[str] = []
    with write_lock(directory):
        try:
            manifest = read_manifest(directory)
        except (IndexCorruptError, IndexNotFoundError):
            copy = _lost_manifest(directory, milvus)
            if copy is None:
                raise
            manifest = replace(copy, milvus={**copy.milvus, "uri": LITE_FILE})
            write_manifest(directory, manifest)
            notes.append(f"{MANIFEST} rebuilt from Milvus's copy")
        memory = MilvusMemory.connect(directory, manifest, milvus)
        try:
            if memory.meta() is None:
                memory.write_meta()
                notes.append("Milvus's copy of the manifest written again")
            orphans, torn, _ = rows_without_header(memory)
            if orphans:
                expr = doc_ids_expression(sorted(orphans))
                memory.client.delete(memory.names.windows, expr)
                memory.client.delete(memory.names.documents, f'kind != "meta" and {expr}')
                notes.append(f"deleted the rows of {len(orphans)} documents without a "
                             f"header: {_few(orphans)}")
            if torn:
                memory.delete(sorted(torn))
                notes.append(f"removed {len(torn)} documents whose rows disagreed with their "
                             f"header ({_few(torn)}); index their sources again")
            # Rows deleted above (and by earlier edits) leave BM25's statistics only once
            # compacted away (ragmem.memory.milvus.lite): keyword scores of a clean build.
            memory.compact()
            write_manifest(directory, replace(memory.manifest, counts=memory.counts()))
        finally:
            memory.close()
    report = check(directory, embedder, milvus)
    return replace(report, notes=(*notes, *report.notes))


def _few(ids: set[str], n: int = 5) -> str:
    shown = sorted(ids)[:n]
    return ", ".join(quote(i) for i in shown) + (f" and {len(ids) - n} more"
                                                 if len(ids) > n else "")

