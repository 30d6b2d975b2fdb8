"""``ragmem check`` for a Milvus index: what can be verified from outside Milvus.

- the manifest, and Milvus's copy of its fixed part (written at creation): the same
  embedder and dimension; the collections exist and hold vectors of that dimension;
- every window and every piece (text, sentences, headings) belongs to a document with
  a header row, and each header's counts match the rows there are: a write cut short
  (see ``ragmem.memory.milvus.store``) leaves rows without a header;
- window spans lie inside their document's text;
- the manifest's counts (a copy) agree with the headers (counts one write behind are a
  note: the next write, or ``repair``, brings them up to date);
- the embedder the manifest names loads here, with the same dimension.

``check`` writes nothing: a milvus-lite index is read from a copy of its folder
(``ragmem.memory.milvus.lite``: milvus-lite writes whenever it opens a folder that a
killed writer left), and a lost manifest is reported, with Milvus's copy of it when
there is one, never rebuilt.

``repair`` deletes rows without a header, removes documents whose rows disagree with
their header (a torn write: index their sources again to restore them), writes a lost
copy of the manifest into Milvus, rebuilds a lost manifest from that copy when the
index's milvus-lite folder is in the index folder, and compacts the windows (so that
keyword scores count only live rows; a server is asked to). Milvus's own storage is Milvus's to
check; this finds what ragmem's writes can leave behind.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragmem.config import MilvusConfig
from ragmem.errors import IndexCorruptError, IndexNotFoundError, RagmemError
from ragmem.memory.findings import CheckReport, Findings, check_embedder
from ragmem.memory.folder import write_lock
from ragmem.memory.manifest import (
    MANIFEST,
    Manifest,
    manifest_from_json,
    read_manifest,
    write_manifest,
)
from ragmem.memory.milvus.client import LITE_FILE, Client, is_lite, open_here, resolve_uri
from ragmem.memory.milvus.expressions import doc_ids_expression, quote
from ragmem.memory.milvus.lite import snapshot
from ragmem.memory.milvus.store import MilvusMemory

if TYPE_CHECKING:
    from ragmem.embedding import Embedder

_KINDS = {"text": "n_text", "sent": "n_sent", "sect": "n_sect"}


def check(directory: Path, embedder: Embedder | None = None,
          milvus: MilvusConfig | None = None) -> CheckReport:
    found = Findings()
    config = milvus or MilvusConfig()
    lite = _lite_folder(directory, config)
    if lite is not None and not lite.is_dir():
        found.problem(f"the milvus-lite folder {lite} of this index is missing; restore it "
                      "from a backup, or index the sources again into a new index",
                      repairable=False)
        return found.report(directory)
    with _read_only(lite, config) as config:
        manifest = _manifest(directory, config, found)
        if manifest is None:
            return found.report(directory)
        try:
            memory = MilvusMemory.connect(directory, manifest, config)
        except RagmemError as exc:
            found.problem(exc.problem, repairable=False)  # the caller words the fix
            return found.report(directory)
        try:
            found.checked.append("milvus collections")
            _check_meta(memory, found)
            _check_rows(memory, found)
            if "manifest" in found.checked:
                _compare_counts(memory, found)
        finally:
            memory.close()
    check_embedder(manifest, embedder, found)
    return found.report(directory)


def _lite_folder(directory: Path, config: MilvusConfig) -> Path | None:
    """The milvus-lite folder the index at ``directory`` lives in (None: a server's):
    ``config.uri``'s, the manifest's, or, the manifest lost, the index folder's own."""
    try:
        uri = config.uri or resolve_uri(str(read_manifest(directory).milvus.get("uri", "")),
                                        directory)
    except (IndexCorruptError, IndexNotFoundError):
        own = directory / LITE_FILE
        return own if own.is_dir() else None  # a server's index, or none at all
    return Path(uri) if is_lite(uri) else None


@contextmanager
def _read_only(lite: Path | None, config: MilvusConfig) -> Iterator[MilvusConfig]:
    """``config``, reaching a copy of the milvus-lite folder ``lite`` (see
    ``lite.snapshot``). A server, or a folder this process has open already (its
    writes are this process's own), is read where it is."""
    if lite is None:
        yield config
        return
    if open_here(str(lite)):
        yield replace(config, uri=str(lite))
        return
    busy = (f"milvus-lite at {lite} is open in another process (milvus-lite lets one "
            "process at a time open it); check again when that one has finished")
    with snapshot(lite, busy) as copy:
        yield replace(config, uri=str(copy))


def _manifest(directory: Path, config: MilvusConfig, found: Findings) -> Manifest | None:
    """The manifest; a lost one is a problem, and what repair rebuilds it from (Milvus's
    copy, in the index's own milvus-lite folder) stands in for it while checking."""
    try:
        manifest = read_manifest(directory)
    except (IndexCorruptError, IndexNotFoundError) as exc:
        lost = directory / MANIFEST
        why = exc.problem if lost.exists() else f"{lost} is missing"
        copy = _lost_manifest(Path(config.uri), config) if config.uri else None
        if copy is None:
            found.problem(f"{why}, and Milvus holds no copy of it to rebuild it from; "
                          "restore it from a backup, or index the sources again into a "
                          "new index", repairable=False)
        else:
            found.problem(f"{why}; Milvus holds a copy of it, which repair writes back",
                          repairable=True)
        return copy
    found.checked.append("manifest")
    return manifest


def _lost_manifest(lite: Path, milvus: MilvusConfig) -> Manifest | None:
    """A lost manifest, from the copy in the milvus-lite folder ``lite`` (a server
    index without its manifest cannot be found again from the folder alone)."""
    if not is_lite(str(lite)) or not lite.is_dir():
        return None
    client = Client(str(lite), replace(milvus, uri=None))
    try:
        bases = [n[:-len("_documents")] for n in client.list_collections()
                 if n.endswith("_documents")]
        copies = []
        for base in bases:
            client.load(f"{base}_documents")  # milvus-lite opens a collection released
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


def _compare_counts(memory: MilvusMemory, found: Findings) -> None:
    """The manifest's counts are a copy: a write cut short after its rows leaves them
    one write behind. Not damage, and not put right here (check writes nothing): a
    note."""
    counts = memory.counts()
    found.checked.append("counts")
    if memory.manifest.counts != counts:
        found.notes.append(f"the manifest's counts {memory.manifest.counts} lag Milvus's "
                           f"{counts} (a write was cut short after its rows; nothing is "
                           "lost): the next write, or check --repair, brings them up to date")


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
            copy = _lost_manifest(directory / LITE_FILE, milvus or MilvusConfig())
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

