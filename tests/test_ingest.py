"""Files -> documents in an index, end to end on the real stores: the same relative name
in two folders is two documents, re-indexing either is an update, ``--sync`` removes
only a document whose own file is gone, and an index built before ids were kept apart
re-indexes without duplicates."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragmem import Assistant
from ragmem.ingest import read_source
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder
from tests.test_indexing import STORES

APPLES = "Apples grow in orchards in Kent. The apple harvest is in autumn."
BANANAS = "Bananas grow on plantations in Peru. The banana harvest never ends."


@pytest.fixture(params=STORES)
def assistant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Assistant]:
    a = Assistant.create(tmp_path / "idx", ECHO, embedder=KeywordEmbedder(),
                         generator=EchoGenerator(), store=request.param)
    yield a
    a.memory.close()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """``src/A/x.txt`` about apples and ``src/B/x.txt`` about bananas."""
    for folder, text in (("A", APPLES), ("B", BANANAS)):
        (tmp_path / "src" / folder).mkdir(parents=True)
        (tmp_path / "src" / folder / "x.txt").write_text(text)
    return tmp_path / "src"


def stored(a: Assistant) -> dict[str, str]:
    """doc_id -> the folder of its file."""
    return {d.doc_id: Path(d.path).parent.name for d in a.memory.documents()}


def counts(a: Assistant, paths: list[Path], sync: bool = False) -> tuple[int, ...]:
    s = a.index(paths, sync=sync)
    return s.added, s.updated, s.unchanged, s.removed


def test_the_same_name_in_two_folders_is_two_documents(assistant: Assistant,
                                                       src: Path) -> None:
    assert counts(assistant, [src / "A", src / "B"]) == (2, 0, 0, 0)
    assert stored(assistant) == {"x.txt": "A", "B/x.txt": "B"}
    for question, folder, word in (("Where do apples grow?", "A", "orchards"),
                                   ("Where do bananas grow?", "B", "plantations")):
        answer = assistant.ask(question)
        [top] = answer.citations
        assert word in answer.text and Path(top.path) == src / folder / "x.txt"
        assert Path(top.path).read_text()[top.start:top.end] == top.quote
    # Again, in either order: nothing is re-embedded, nothing added.
    assert counts(assistant, [src / "B", src / "A"]) == (0, 0, 2, 0)
    assert stored(assistant) == {"x.txt": "A", "B/x.txt": "B"}


def test_folders_indexed_in_separate_runs_keep_each_other(assistant: Assistant,
                                                        src: Path) -> None:
    assert counts(assistant, [src / "A"]) == (1, 0, 0, 0)
    assert counts(assistant, [src / "B"]) == (1, 0, 0, 0)
    assert stored(assistant) == {"x.txt": "A", "B/x.txt": "B"}
    assert counts(assistant, [src]) == (0, 0, 2, 0)  # their parent: the same two


def test_reindexing_both_is_an_update(assistant: Assistant, src: Path) -> None:
    assistant.index([src / "A", src / "B"])
    (src / "B" / "x.txt").write_text(BANANAS + " Plantains are bananas too.")
    assert counts(assistant, [src / "A", src / "B"]) == (0, 1, 1, 0)
    assert stored(assistant) == {"x.txt": "A", "B/x.txt": "B"}
    assert "Plantains" in assistant.memory.document_text("B/x.txt")
    assert assistant.memory.document_text("x.txt") == APPLES


def test_sync_removes_only_the_document_whose_own_file_is_gone(assistant: Assistant,
                                                               src: Path) -> None:
    assistant.index([src / "A", src / "B"])
    (src / "A" / "x.txt").unlink()
    assert counts(assistant, [src / "A", src / "B"], sync=True) == (0, 0, 1, 1)
    assert stored(assistant) == {"B/x.txt": "B"}  # not renamed: still its own id
    shutil.rmtree(src / "B")  # a whole folder removed; its parent synced
    assert counts(assistant, [src], sync=True) == (0, 0, 0, 1)
    assert stored(assistant) == {}


def test_sync_of_the_parent_after_one_folder_is_removed(assistant: Assistant,
                                                        src: Path) -> None:
    assistant.index([src / "A", src / "B"])
    shutil.rmtree(src / "B")
    assert counts(assistant, [src], sync=True) == (0, 0, 1, 1)
    assert stored(assistant) == {"x.txt": "A"}
    assert [c.path for c in assistant.ask("Where do apples grow?").citations] == [
        str(src / "A" / "x.txt")]


def test_an_index_built_before_ids_were_kept_apart_reindexes_without_duplicates(
        assistant: Assistant, src: Path) -> None:
    """Before, an id was the path relative to the folder given, whatever else held it:
    ``index A`` then ``index B`` left one "x.txt", B's. Such an index keeps its ids."""
    (src / "A" / "s").mkdir()
    (src / "A" / "s" / "y.txt").write_text("Pears grow in Normandy.")
    for folder in ("A", "B"):  # the old rule: ids relative to the folder given
        root = src / folder
        assistant.indexer.ingest([read_source(root, f, 1 << 20) for f in sorted(
            root.rglob("*.txt"))], 0)
    assert stored(assistant) == {"x.txt": "B", "s/y.txt": "s"}
    assert counts(assistant, [src / "A", src / "B"]) == (1, 0, 2, 0)
    assert stored(assistant) == {"x.txt": "B", "s/y.txt": "s", "A/x.txt": "A"}
    assert counts(assistant, [src / "A", src / "B"]) == (0, 0, 3, 0)
