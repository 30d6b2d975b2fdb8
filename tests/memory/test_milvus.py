"""The Milvus store on milvus-lite (in this process, data under tmp_path): the same
answers as the FAISS store, filters inside the search, BM25, retry after a write cut
short, reopening from the manifest, and the command line end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the Milvus store needs pymilvus: "
                    "pip install 'ragmem[scale]'")
pytest.importorskip("milvus_lite", reason="Milvus tests run on milvus-lite: "
                    "pip install 'ragmem[scale]'")

from ragmem.config import IndexConfig, MilvusConfig  # noqa: E402
from ragmem.errors import IndexCorruptError, IndexMismatchError, StoreError  # noqa: E402
from ragmem.memory import LongTermMemory, create_memory, open_memory  # noqa: E402
from ragmem.memory.check import check, repair  # noqa: E402
from ragmem.memory.milvus import MilvusMemory  # noqa: E402
from ragmem.memory.milvus.expressions import doc_ids_expression  # noqa: E402
from ragmem.types import Document, Filter, Sentence, Window  # noqa: E402
from tests.conftest import EchoGenerator, KeywordEmbedder  # noqa: E402
from tests.memory.test_check import StoredEmbedder  # noqa: E402
from tests.memory.test_store import DIM, make_doc  # noqa: E402

TEST = StoredEmbedder()


@pytest.fixture(scope="module", autouse=True)
def _lite_starts(tmp_path_factory: pytest.TempPathFactory) -> None:
    from pymilvus import MilvusClient

    try:
        MilvusClient(str(tmp_path_factory.mktemp("lite") / "probe.db")).close()
    except Exception as exc:  # milvus-lite needs no server, but can fail to start
        pytest.skip(f"milvus-lite cannot start here: {exc}")


def create(path: Path, **settings: Any) -> MilvusMemory:
    return MilvusMemory.create(path, embedder="test", dim=DIM, chunking={"w": 1},
                               config=MilvusConfig(**settings))


def build(path: Path, docs: dict[str, tuple[int, int]], **settings: Any) -> MilvusMemory:
    memory = create(path, **settings)
    with memory.writer() as w:
        for doc_id, (n, seed) in docs.items():
            w.add(*make_doc(doc_id, n, seed))
    return memory


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[MilvusMemory]:
    m = build(tmp_path / "i", {f"d{i}": (5 + i, i) for i in range(6)})
    yield m
    m.close()


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    q = rng.normal(size=(n, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def stored_windows(memory: MilvusMemory, doc_id: str) -> int:
    """Window rows in Milvus for ``doc_id``, header or not (no copies, no leftovers)."""
    return memory.client.count(memory.names.windows, doc_ids_expression([doc_id]))


# -- the Memory surface ------------------------------------------------------------------

def test_add_update_remove_round_trip(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (5, 1), "b": (3, 2)})
    doc, sentences, windows, _ = make_doc("a", 5, 1)
    assert memory.content_hashes() == {"a": "h1", "b": "h2"}
    assert memory.counts() == {"documents": 2, "sentences": 8, "windows": 8}
    assert [(d.doc_id, d.n_windows, d.path) for d in memory.documents()] == [
        ("a", 5, "/src/a"), ("b", 3, "/src/b")]
    assert memory.document_text("a") == doc.text and memory.document_path("a") == "/src/a"
    assert memory.sentences("a", -3, 1) == sentences[:2]  # clipped to the document
    assert memory.sentences("a", 4, 99) == sentences[4:]
    assert memory.windows("a") == windows
    for w in memory.windows("b"):
        assert memory.document_text("b")[w.start:w.end] == w.text

    with memory.writer() as w:  # a shorter new version: nothing of the old one is left
        w.add(*make_doc("a", 2, 7))
    assert memory.content_hashes()["a"] == "h7"
    assert len(memory.windows("a")) == 2 == stored_windows(memory, "a")
    assert memory.document_text("a") == make_doc("a", 2, 7)[0].text  # not the cached old one

    with memory.writer() as w:
        assert w.remove("b") == 3
        assert w.remove("nope") == 0
    assert memory.content_hashes() == {"a": "h7"} and stored_windows(memory, "b") == 0
    assert memory.document_text("b") == "" and memory.sentences("b", 0, 9) == []
    assert json.loads((tmp_path / "i" / "manifest.json").read_text())["counts"] == {
        "documents": 1, "sentences": 2, "windows": 2}
    memory.close()


def test_long_text_cjk_and_sections_come_back_exact(tmp_path: Path) -> None:
    """Text over a VARCHAR's 65,535 bytes is stored in pieces; CJK windows keep their
    text beside the bigrams BM25 reads; headings come back as stored."""
    memory = create(tmp_path / "i")
    parts = ["北京大学在中国。", "é" * 40_000 + ".", "The end."]  # 80,000 bytes of é
    text = " ".join(parts)
    sentences, pos = [], 0
    for i, p in enumerate(parts):
        sentences.append(Sentence("x", i, pos, pos + len(p), p))
        pos += len(p) + 1
    windows = [Window("x", i, i, i, s.start, s.end, s.text, 3) for i, s in enumerate(sentences)]
    sections = [[0, "Intro"], [9, "Intro › Long"]]
    doc = Document("x", "/src/x.md", text, content_hash="hx", metadata={"sections": sections})
    with memory.writer() as w:
        w.add(doc, sentences, windows, unit(np.random.default_rng(0), 3))
    assert memory.document_text("x") == text
    assert memory.windows("x") == windows  # the 80 KB window too (read from the document)
    assert memory.document_sections("x") == sections
    assert [h.doc_id for h in memory.lexical_search("北京", 3)] == ["x"]
    memory.close()


def test_search_equals_faiss_exact_top_k(tmp_path: Path) -> None:
    docs = {f"d{i}": (7 + i, i) for i in range(8)}
    milvus = build(tmp_path / "m", docs)
    faiss = LongTermMemory.create(tmp_path / "f", embedder="test", dim=DIM, chunking={})
    with faiss.writer() as w:
        for doc_id, (n, seed) in docs.items():
            w.add(*make_doc(doc_id, n, seed))
    rng = np.random.default_rng(5)
    queries = unit(rng, 12)
    for k in (1, 10, 200):
        got, want = milvus.search(queries, k), faiss.search(queries, k)
        for a, b in zip(got, want, strict=True):
            assert [(h.doc_id, h.first, h.text) for h in a] == \
                   [(h.doc_id, h.first, h.text) for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    milvus.close()
    faiss.close()


def test_filters_run_inside_the_search(tmp_path: Path) -> None:
    """Each filter gets a full top-k from the matching documents only (not a post-filter
    of the global top-k), whether Milvus's `like` can say the glob or not."""
    memory = create(tmp_path / "i")
    rng = np.random.default_rng(3)
    with memory.writer() as w:
        for i in range(10):
            doc, sentences, windows, vecs = make_doc(f"doc_{i}", 6, i)
            doc = replace(doc, path=f"/src/{'news' if i % 3 == 0 else 'mail'}/{i}.txt",
                          metadata={"lang": "en" if i % 2 else "de", "n": i, "odd": bool(i % 2),
                                    "q\"uote": "x"})
            w.add(doc, sentences, windows, vecs)
    q = unit(rng)
    everything = memory.search(q, 60)[0]

    def expected(keep: set[str], k: int) -> list[tuple[str, int]]:
        return [(h.doc_id, h.first) for h in everything if h.doc_id in keep][:k]

    cases = [
        (Filter(doc_ids=("doc_1", "doc_7")), {"doc_1", "doc_7"}),
        (Filter(path_glob="/src/news/*"), {"doc_0", "doc_3", "doc_6", "doc_9"}),
        (Filter(path_glob="doc_[12]"), {"doc_1", "doc_2"}),  # a class: resolved by id
        (Filter(path_glob="doc_?"), {f"doc_{i}" for i in range(10)}),  # a literal _: by id
        (Filter(metadata={"lang": "en"}), {f"doc_{i}" for i in (1, 3, 5, 7, 9)}),
        (Filter(metadata={"odd": True, "n": 3}), {"doc_3"}),
        (Filter(metadata={"q\"uote": "x", "n": 4}), {"doc_4"}),  # a key `like` can't name
        (Filter(metadata={"lang": "fr"}), set()),
        (Filter(doc_ids=()), set()),
    ]
    for where, keep in cases:
        hits = memory.search(q, 8, where)[0]
        assert [(h.doc_id, h.first) for h in hits] == expected(keep, 8), where
        lexical = memory.lexical_search("sentence", 100, where)
        assert {h.doc_id for h in lexical} == keep, where
    memory.close()


def test_lexical_search_finds_a_rare_word(memory: MilvusMemory) -> None:
    with memory.writer() as w:
        doc, sentences, windows, vecs = make_doc("rare", 4, 40)
        text = doc.text.replace("Sentence 2 of rare.", "Sentence 2 of zygomorphic.")
        sentences[2] = replace(sentences[2], text="Sentence 2 of zygomorphic.")
        windows[2] = replace(windows[2], text="Sentence 2 of zygomorphic.")
        w.add(replace(doc, text=text), sentences, windows, vecs)
    hits = memory.lexical_search("Which flower is zygomorphic?", 5)
    assert [(h.doc_id, h.first, h.text) for h in hits][:1] == [
        ("rare", 2, "Sentence 2 of zygomorphic.")]
    assert hits[0].score > 0
    common = memory.lexical_search("sentence of", 10)
    scores = [h.score for h in common]
    assert len(common) == 10 and scores == sorted(scores, reverse=True)
    assert memory.lexical_search("the of and", 5, max_terms=2)  # stopwords only: kept
    assert memory.lexical_search("qwertyuiop", 5) == []


def test_without_full_text_lexical_search_is_off_with_a_warning(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (3, 1)}, full_text=False)
    with pytest.warns(UserWarning, match="no full-text search"):
        assert memory.lexical_search("Sentence", 5) == []
    assert memory.search(make_doc("a", 3, 1)[3][:1], 1)[0][0].doc_id == "a"
    memory.close()


# -- writes cut short, and retried ----------------------------------------------------

def fail_on_headers(memory: MilvusMemory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus goes away after a document's windows and pieces are written, before its
    header: the worst place for a write to stop."""
    real = memory.client.upsert

    def upsert(name: str, rows: list[dict[str, object]]) -> None:
        if name == memory.names.documents and rows and rows[0].get("kind") == "doc":
            raise StoreError("Milvus went away")
        real(name, rows)

    monkeypatch.setattr(memory.client, "upsert", upsert)


def test_a_write_cut_short_is_absent_and_a_retry_leaves_no_copies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = build(tmp_path / "i", {"a": (5, 1), "b": (3, 2)})
    with monkeypatch.context() as m:
        fail_on_headers(memory, m)
        with pytest.raises(StoreError, match="went away"), memory.writer() as w:
            w.add(*make_doc("a", 2, 9))  # an update, shorter
            w.add(*make_doc("c", 4, 3))  # a new document
    # Both look absent: the next `ragmem index` sees them as new and writes them again.
    assert memory.content_hashes() == {"b": "h2"}
    vectors = make_doc("c", 4, 3)[3]
    assert all(h.doc_id == "b" for h in memory.search(vectors, 20)[0])
    assert memory.sentences("c", 0, 3) == [] and memory.document_text("a") == ""
    report = check(tmp_path / "i", TEST)
    assert not report.ok and report.repairable
    assert "2 documents have rows but no header" in report.problems[0]

    with memory.writer() as w:  # the retry
        w.add(*make_doc("a", 2, 9))
        w.add(*make_doc("c", 4, 3))
    assert memory.content_hashes() == {"a": "h9", "b": "h2", "c": "h3"}
    assert (stored_windows(memory, "a"), stored_windows(memory, "c")) == (2, 4)
    assert memory.counts() == {"documents": 3, "sentences": 9, "windows": 9}
    assert memory.search(vectors[1:2], 1)[0][0].doc_id == "c"
    assert check(tmp_path / "i", TEST).ok
    memory.close()


def test_a_move_rewrites_the_paths_with_the_same_vectors_header_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = build(tmp_path / "i", {"a": (5, 1), "b": (3, 2)})
    q = make_doc("a", 5, 1)[3][:1]
    before = [(h.window_id, h.doc_id, round(h.score, 5)) for h in memory.search(q, 8)[0]]
    with monkeypatch.context() as m:
        fail_on_headers(memory, m)
        with pytest.raises(StoreError, match="went away"), memory.writer() as w:
            w.move("a", "/moved/a", 7.0)
    # Cut short: the header still names the old path, so the next run moves it again.
    assert memory.document_path("a") == "/src/a" and check(tmp_path / "i", TEST).ok
    with memory.writer() as w:  # the retry
        assert w.move("a", "/moved/a", 7.0) and not w.move("gone", "/moved/gone", 7.0)
    memory.close()
    memory = MilvusMemory.open(tmp_path / "i")
    assert [(d.doc_id, d.path, d.mtime) for d in memory.documents()] == [
        ("a", "/moved/a", 7.0), ("b", "/src/b", 0.0)]
    assert [(h.window_id, h.doc_id, round(h.score, 5))
            for h in memory.search(q, 8)[0]] == before
    assert {h.doc_id for h in memory.search(q, 8, Filter(path_glob="/moved/*"))[0]} == {"a"}
    assert stored_windows(memory, "a") == 5 and memory.windows("a") == make_doc("a", 5, 1)[2]
    assert memory.lexical_search("Sentence", 8) and check(tmp_path / "i", TEST).ok
    assert memory.counts() == {"documents": 2, "sentences": 8, "windows": 8}
    memory.close()


def test_repair_deletes_what_a_cut_short_write_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = build(tmp_path / "i", {"a": (5, 1)})
    with monkeypatch.context() as m:
        fail_on_headers(memory, m)
        with pytest.raises(StoreError), memory.writer() as w:
            w.add(*make_doc("c", 4, 3))
    # A torn document too: a window of "a" lost behind ragmem's back.
    memory.client.delete(memory.names.windows, 'doc_id == "a" and idx == 4')
    memory.close()
    report = repair(tmp_path / "i", TEST)
    assert report.ok, report.problems
    assert any("without a header" in n for n in report.notes)
    assert any("index their sources again" in n for n in report.notes)
    again = open_memory(tmp_path / "i")
    assert isinstance(again, MilvusMemory)
    assert again.content_hashes() == {} and stored_windows(again, "c") == 0
    again.close()


# -- opening, and what it refuses -------------------------------------------------------

def test_reopened_from_the_manifest_alone(tmp_path: Path) -> None:
    path = tmp_path / "i"
    memory = create_memory(path, embedder="test", dim=DIM, chunking={},
                           config=IndexConfig(store="milvus"))
    assert isinstance(memory, MilvusMemory)
    with memory.writer() as w:
        w.add(*make_doc("a", 4, 1))
    q = make_doc("a", 4, 1)[3][2:3]
    before = memory.search(q, 3)[0]
    memory.close()
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["store"], manifest["format_version"]) == ("milvus", 2)
    assert manifest["milvus"]["uri"] == "milvus.db"  # inside the folder: it can move
    assert (path / "milvus.db").stat().st_mode & 0o077 == 0  # it holds the text
    moved = tmp_path / "moved"
    path.rename(moved)
    again = open_memory(moved, embedder="test")
    assert isinstance(again, MilvusMemory) and again.search(q, 3)[0] == before
    assert again.info().index_type == "milvus-lite FLAT"
    assert again.info().vectors_in_index == 4
    again.close()


def test_dimension_mismatches_are_refused(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (3, 1)}, collection="shared_memory")
    with pytest.raises(ValueError, match=r"expected vectors of shape \(3, 16\)"):
        with memory.writer() as w:
            doc, sentences, windows, _ = make_doc("b", 3, 2)
            w.add(doc, sentences, windows, np.zeros((3, 8), np.float32))
    memory.close()
    # Another folder attaching to the same collection: the same embedder shares it ...
    other = MilvusMemory.create(tmp_path / "j", embedder="test", dim=DIM, chunking={},
                                config=MilvusConfig(uri=str(tmp_path / "i" / "milvus.db"),
                                                    collection="shared_memory"))
    assert other.content_hashes() == {"a": "h1"}
    other.close()
    # ... another is refused, naming the one that built it.
    with pytest.raises(IndexMismatchError, match="built with embedder 'test' \\(16 dims\\)"):
        MilvusMemory.create(tmp_path / "k", embedder="bigger", dim=32, chunking={},
                            config=MilvusConfig(uri=str(tmp_path / "i" / "milvus.db"),
                                                collection="shared_memory"))
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    (tmp_path / "i" / "manifest.json").write_text(json.dumps({**manifest, "dim": 32}))
    with pytest.raises(IndexCorruptError, match="holds 16-dimensional vectors"):
        open_memory(tmp_path / "i")


def test_missing_collection_and_unreachable_server_are_one_line(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (3, 1)})
    memory.drop()
    memory.close()
    with pytest.raises(IndexCorruptError, match="has no collection ragmem_i_.*_documents"):
        open_memory(tmp_path / "i")
    t = time.perf_counter()
    with pytest.raises(StoreError, match="cannot reach Milvus at http://127.0.0.1:9"):
        create(tmp_path / "s", uri="http://127.0.0.1:9", timeout_s=1.0)
    assert time.perf_counter() - t < 30


def test_a_lite_folder_open_in_another_process_is_named(tmp_path: Path) -> None:
    path = tmp_path / "i"
    create(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
         f"MilvusClient({str(path / 'milvus.db')!r}); print('open', flush=True); "
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="open in another process"):
            open_memory(path)
    finally:
        holder.communicate("")


# -- the assistant and the command line, with the real embedder ----------------------

def test_assistant_creates_and_reopens_a_milvus_index(
        tmp_path: Path, corpus_dir: Path, keyword_embedder: KeywordEmbedder,
        echo_generator: EchoGenerator) -> None:
    from ragmem import Assistant

    with Assistant.create(tmp_path / "a", store="milvus", embedder=keyword_embedder,
                          generator=echo_generator) as assistant:
        assert assistant.index([corpus_dir]).added == 3
    with Assistant.open(tmp_path / "a", embedder=keyword_embedder,
                        generator=echo_generator) as assistant:
        assert isinstance(assistant.memory, MilvusMemory)
        hits = assistant.retrieve("Olympus Mons volcano", top_k=2)
        assert hits[0].doc_id == "space/mars.md"
        assert assistant.index([corpus_dir]).unchanged == 3


@pytest.mark.slow
def test_cli_end_to_end_on_milvus_lite(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) \
        -> None:
    """index --store milvus, then every command finds the store in the manifest; the
    answer's citation is the file's text at its offsets (real MiniLM, echo generator)."""
    from click.testing import CliRunner

    import ragmem.assistant
    from ragmem.cli import cli

    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    runner = CliRunner()
    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", "t", "--store", "milvus",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 3
    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", "t", "--json"])
    assert json.loads(r.stdout)["unchanged"] == 3  # no --store, no --uri: the manifest's

    r = runner.invoke(cli, ["info", "t", "--json"])
    info = json.loads(r.stdout)
    assert (info["documents"], info["index_type"]) == (3, "milvus-lite FLAT")

    r = runner.invoke(cli, ["ask", "t", "When did Neil Armstrong walk on the Moon?",
                            "--answer", "extract", "--json", "--show-context"])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    top = answer["citations"][0]
    assert top["doc_id"] == "space/moon.txt" and "1969" in answer["answer"]
    assert Path(top["path"]).read_text()[top["start"]:top["end"]] == top["quote"]

    r = runner.invoke(cli, ["ask", "t", "Moon", "--path", "cats*", "--json"])
    assert {c["doc_id"] for c in json.loads(r.stdout)["citations"]} == {"cats.txt"}
    r = runner.invoke(cli, ["rm", "t", "space/*", "--yes"])
    assert r.exit_code == 0 and "removed 2 documents" in r.output
    r = runner.invoke(cli, ["check", "t"])
    assert r.exit_code == 0 and ": ok" in r.output, r.output

    r = runner.invoke(cli, ["rm", "t", "--drop", "--dry-run"])
    assert r.exit_code == 0 and "_documents" in r.output and "_windows" in r.output
    r = runner.invoke(cli, ["rm", "t", "--drop", "--yes", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["info", "t"])
    assert r.exit_code == 1 and "no ragmem index at" in r.output
