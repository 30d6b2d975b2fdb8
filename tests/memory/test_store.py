from __future__ import annotations

import fnmatch
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragmem.errors import IndexLockedError, IndexMismatchError, IndexNotFoundError
from ragmem.memory import FORMAT_VERSION, LongTermMemory
from ragmem.types import Document, Filter, Sentence, Window

DIM = 16


def make_doc(doc_id: str, n_windows: int, seed: int) -> tuple[Document, list[Sentence],
                                                           list[Window], np.ndarray]:
    sentences, windows, parts, pos = [], [], [], 0
    for i in range(n_windows):
        text = f"Sentence {i} of {doc_id}."
        sentences.append(Sentence(doc_id, i, pos, pos + len(text), text))
        windows.append(Window(doc_id, i, i, i, pos, pos + len(text), text, 5))
        parts.append(text)
        pos += len(text) + 1
    doc = Document(doc_id, f"/src/{doc_id}", " ".join(parts), content_hash=f"h{seed}")
    vecs = np.random.default_rng(seed).normal(size=(n_windows, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return doc, sentences, windows, vecs


def build(path: Path, docs: dict[str, tuple[int, int]]) -> LongTermMemory:
    memory = LongTermMemory.create(path, embedder="test", dim=DIM, chunking={"w": 1})
    with memory.writer() as w:
        for doc_id, (n, seed) in docs.items():
            w.add(*make_doc(doc_id, n, seed))
    return memory


def brute_force(memory: LongTermMemory, query: np.ndarray, k: int) -> list[int]:
    ids, vecs = zip(*memory.docstore.iter_vectors(batch=7), strict=True)
    all_ids, all_vecs = np.concatenate(ids), np.concatenate(vecs)
    order = np.argsort(-(all_vecs @ query), kind="stable")[:k]
    return all_ids[order].tolist()


def test_topk_equals_numpy_brute_force(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {f"d{i}": (13 + i, i) for i in range(9)})
    rng = np.random.default_rng(99)
    for _ in range(20):
        q = rng.normal(size=DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        for k in (1, 7, 50):
            hits = memory.search(q[None], k)[0]
            assert [h.window_id for h in hits] == brute_force(memory, q, k)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)


def test_save_open_round_trip(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (5, 1), "b": (8, 2)})
    q = make_doc("a", 5, 1)[3][2:3]
    before = memory.search(q, 6)[0]
    info = memory.info()
    memory.close()
    again = LongTermMemory.open(tmp_path / "i", embedder="test")
    assert again.search(q, 6)[0] == before
    assert again.info().windows == info.windows == 13
    assert before[0].doc_id == "a" and before[0].text == "Sentence 2 of a."
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedder"] == "test" and manifest["dim"] == DIM
    assert manifest["counts"] == {"documents": 2, "sentences": 13, "windows": 13}


def test_other_embedder_is_refused(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    with pytest.raises(IndexMismatchError, match="built with embedder 'test'"):
        LongTermMemory.open(tmp_path / "i", embedder="other-model")


def test_newer_format_is_refused(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    path = tmp_path / "i" / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError, match="upgrade ragmem"):
        LongTermMemory.open(tmp_path / "i")


def test_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError,
                       match=r"no ragmem index at .*nope.*build one: Assistant.create"):
        LongTermMemory.open(tmp_path / "nope")


def test_failed_write_leaves_previous_contents(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1)})
    with pytest.raises(RuntimeError), memory.writer() as w:
        w.add(*make_doc("b", 6, 2))
        w.remove("a")
        raise RuntimeError("crash mid-index")
    reopened = LongTermMemory.open(tmp_path / "i")
    assert [d.doc_id for d in reopened.docstore.documents()] == ["a"]
    assert reopened.vectors.ntotal == 4


def test_a_move_lands_with_its_batch_and_touches_no_vector(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1), "b": (2, 2)})
    log = memory.docstore.last_change()
    with pytest.raises(RuntimeError), memory.writer() as w:
        assert w.move("a", "/moved/a", 7.0)
        raise RuntimeError("crash mid-index")
    assert LongTermMemory.open(tmp_path / "i").document_path("a") == "/src/a"  # rolled back
    q = make_doc("a", 4, 1)[3][:1]
    before = [(h.window_id, h.score) for h in memory.search(q, 6)[0]]
    with memory.writer() as w:
        assert w.move("a", "/moved/a", 7.0) and not w.move("gone", "/moved/gone", 7.0)
    reopened = LongTermMemory.open(tmp_path / "i")
    assert [(d.doc_id, d.path, d.mtime) for d in reopened.documents()] == [
        ("a", "/moved/a", 7.0), ("b", "/src/b", 0.0)]
    assert reopened.docstore.last_change() == log  # no window added or deleted
    assert [(h.window_id, h.score) for h in reopened.search(q, 6)[0]] == before
    assert reopened.document_text("a") == make_doc("a", 4, 1)[0].text
    assert reopened.counts() == {"documents": 2, "sentences": 6, "windows": 6}


def test_second_writer_is_refused(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (2, 1)})
    other = LongTermMemory.open(tmp_path / "i")
    with memory.writer(), pytest.raises(IndexLockedError, match="another ragmem process"):
        with other.writer():
            pass


def test_reader_sees_writer_changes(tmp_path: Path) -> None:
    writer = build(tmp_path / "i", {"a": (3, 1)})
    reader = LongTermMemory.open(tmp_path / "i")
    with writer.writer() as w:
        w.add(*make_doc("b", 4, 2))
        w.remove("a")
    q = make_doc("b", 4, 2)[3][:1]
    assert {h.doc_id for h in reader.search(q, 10)[0]} == {"b"}
    assert reader.vectors.ntotal == 4


def test_updates_equal_rebuild_from_scratch(tmp_path: Path) -> None:
    memory = build(tmp_path / "inc", {"a": (5, 1), "b": (6, 2), "c": (7, 3)})
    with memory.writer() as w:
        w.add(*make_doc("b", 9, 20))  # changed document replaces the old one
        w.remove("c")
        w.add(*make_doc("d", 3, 4))
    fresh = build(tmp_path / "new", {"a": (5, 1), "b": (9, 20), "d": (3, 4)})
    rng = np.random.default_rng(5)
    for _ in range(10):
        q = rng.normal(size=(1, DIM)).astype(np.float32)
        got = [(h.doc_id, h.start, round(h.score, 5)) for h in memory.search(q, 8)[0]]
        want = [(h.doc_id, h.start, round(h.score, 5)) for h in fresh.search(q, 8)[0]]
        assert got == want
    reopened = LongTermMemory.open(tmp_path / "inc")
    assert reopened.vectors.ntotal == 17 and sorted(reopened.vectors.ids()) == sorted(
        reopened.docstore.window_ids())


@pytest.mark.parametrize("where", [
    Filter(doc_ids=("b", "c")),
    Filter(path_glob="/src/[ab]"),
    Filter(metadata={"lang": "en"}),
    Filter(doc_ids=("a", "b", "c"), metadata={"lang": "en"}, path_glob="*c"),
])
def test_filters_equal_brute_force_filtering(tmp_path: Path, where: Filter) -> None:
    memory = LongTermMemory.create(tmp_path / "i", embedder="test", dim=DIM, chunking={})
    with memory.writer() as w:
        for i, doc_id in enumerate("abcd"):
            doc, sents, wins, vecs = make_doc(doc_id, 20, i)
            lang = "en" if doc_id in "ac" else "fr"
            w.add(replace(doc, metadata={"lang": lang}), sents, wins, vecs)
    allowed = {d.doc_id for d in memory.docstore.documents()
               if (where.doc_ids is None or d.doc_id in where.doc_ids)
               and (where.path_glob is None or fnmatch.fnmatchcase(d.path, where.path_glob)
                    or fnmatch.fnmatchcase(d.doc_id, where.path_glob))
               and (not where.metadata or ("en" if d.doc_id in "ac" else "fr") == "en")}
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.normal(size=DIM).astype(np.float32)
        got = memory.search(q[None], 7, where=where)[0]
        want = [i for i in brute_force(memory, q, 80)
                if memory.docstore.hits([i], [0.0])[0].doc_id in allowed][:7]
        assert [h.window_id for h in got] == want
    assert memory.search(q[None], 5, where=Filter(doc_ids=("zzz",)))[0] == []


@pytest.mark.parametrize("factory", ["IDMap2,Flat", "IVF8,Flat"])
def test_memory_mapped_reader_follows_writes(tmp_path: Path, factory: str) -> None:
    from ragmem.config import IndexConfig
    from ragmem.memory.faiss.vectors import LayeredIndex

    writer = LongTermMemory.create(tmp_path / "i", embedder="test", dim=DIM, chunking={},
                                   config=IndexConfig(factory=factory, nprobe=8))
    with writer.writer() as w:
        for i in range(6):
            w.add(*make_doc(f"d{i}", 40, i))
    reader = LongTermMemory.open(tmp_path / "i", config=IndexConfig(mmap=True, nprobe=8))
    assert isinstance(reader.vectors, LayeredIndex)
    with writer.writer() as w:  # below the snapshot threshold: lands in the change log
        w.remove("d1")
        w.add(*make_doc("d1", 7, 77))
        w.add(*make_doc("new", 9, 99))
    rng = np.random.default_rng(0)
    for _ in range(10):
        q = rng.normal(size=(1, DIM)).astype(np.float32)
        want = [(h.window_id, round(h.score, 5)) for h in writer.search(q, 12)[0]]
        got = [(h.window_id, round(h.score, 5)) for h in reader.search(q, 12)[0]]
        assert got == want
    assert sorted(reader.vectors.ids().tolist()) == reader.docstore.window_ids().tolist()
    with reader.writer() as w:  # a reader may become the writer: it loads the index in RAM
        w.remove("new")
    assert not isinstance(reader.vectors, LayeredIndex)
    assert reader.vectors.ntotal == 5 * 40 + 7


def test_read_interface_gives_back_what_was_written(tmp_path: Path) -> None:
    """documents, sentences, windows, counts, path, text, hashes: the Memory surface."""
    memory = build(tmp_path / "i", {"a": (3, 1), "b": (2, 2)})
    doc, sentences, windows, _ = make_doc("a", 3, 1)
    assert [(d.doc_id, d.path, d.content_hash, d.n_windows) for d in memory.documents()] == [
        ("a", "/src/a", "h1", 3), ("b", "/src/b", "h2", 2)]
    assert memory.counts() == {"documents": 2, "sentences": 5, "windows": 5}
    assert memory.content_hashes() == {"a": "h1", "b": "h2"}
    assert memory.document_text("a") == doc.text and memory.document_path("a") == "/src/a"
    assert memory.sentences("a", 1, 9) == sentences[1:]  # clipped to the document
    assert memory.windows("a") == windows
    assert memory.document_text("gone") == "" and memory.windows("gone") == []


def test_lexical_ranking_does_not_depend_on_how_many_are_asked_for(tmp_path: Path) -> None:
    # Ten windows with the same text tie on BM25: the id decides, whatever the limit.
    memory = build(tmp_path / "i", {f"d{i}": (1, 7) for i in range(10)})
    full = [h.window_id for h in memory.lexical_search("sentence", 10)]
    assert [h.window_id for h in memory.lexical_search("sentence", 3)] == full[:3]


def overwrite_middle(path: Path, n: int = 4096) -> None:
    """n random bytes into the middle of ``path``, its size unchanged, as a stray write
    would. After a pause: a write in the same clock tick as the file's own would leave
    its timestamps as they were (see ragmem.memory.faiss.snapshot)."""
    import time

    time.sleep(0.05)
    with path.open("r+b") as f:
        f.seek(max(0, path.stat().st_size // 2 - n // 2))
        f.write(np.random.default_rng(0).bytes(n))


@pytest.mark.parametrize("mmap", [False, True])
def test_a_snapshot_changed_behind_our_back_is_never_served(tmp_path: Path, mmap: bool) -> None:
    from ragmem.config import IndexConfig
    from ragmem.errors import IndexCorruptError
    from ragmem.memory.check import repair

    memory = build(tmp_path / "i", {f"d{i}": (40, i) for i in range(4)})  # ~12 KB of FAISS
    q = make_doc("d2", 40, 2)[3][5:6]
    before = memory.search(q, 5)[0]
    memory.close()
    (snapshot,) = (tmp_path / "i").glob("vectors-*.faiss")
    size = snapshot.stat().st_size
    overwrite_middle(snapshot)
    assert snapshot.stat().st_size == size
    with pytest.raises(IndexCorruptError, match=r"vectors-\d+.faiss fails its checksum.*repair"):
        LongTermMemory.open(tmp_path / "i", config=IndexConfig(mmap=mmap))
    repair(tmp_path / "i")
    assert LongTermMemory.open(tmp_path / "i").search(q, 5)[0] == before


def test_a_snapshot_without_a_recorded_file_state_is_verified_in_full(tmp_path: Path) -> None:
    # Indexes written before the file's state was recorded keep only its sha256.
    memory = build(tmp_path / "i", {f"d{i}": (40, i) for i in range(4)})
    with memory.docstore.transaction():
        memory.docstore.conn.execute("DELETE FROM meta WHERE key = 'snapshot_stat'")
    memory.close()
    (snapshot,) = (tmp_path / "i").glob("vectors-*.faiss")
    intact = snapshot.read_bytes()
    LongTermMemory.open(tmp_path / "i").close()  # verified by its sha256: it opens
    overwrite_middle(snapshot)
    from ragmem.errors import IndexCorruptError

    with pytest.raises(IndexCorruptError, match="fails its checksum"):
        LongTermMemory.open(tmp_path / "i")
    snapshot.write_bytes(intact)
    memory = LongTermMemory.open(tmp_path / "i")
    with memory.writer() as w:  # the next write records the state: later opens are cheap
        w.add(*make_doc("e", 2, 9))
    assert memory.docstore.get_meta("snapshot_stat") is not None
