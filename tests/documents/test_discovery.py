"""Which id each file gets: its path relative to the folder given, unless another file
holds that id; then as many folders above it as make it unique. A file the index holds
keeps its id."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ragmem.documents import discover, load_file


def ids(paths: Sequence[Path], stored: Mapping[str, str] | None = None) -> list[str]:
    """The doc_id of each file ``discover`` finds, as ``load_file`` gives it."""
    return [doc.doc_id for root, file in discover(paths, stored=stored)
            for doc in load_file(file, root)]


def tree(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name} under {root.name}. It says so.")
    return root


def test_the_same_name_in_two_folders_of_one_run_is_two_ids(tmp_path: Path) -> None:
    a, b = tree(tmp_path / "A", "x.txt", "s/y.md"), tree(tmp_path / "B", "x.txt", "s/y.md")
    assert ids([a, b]) == ["s/y.md", "x.txt", "B/s/y.md", "B/x.txt"]
    # Alone, each folder's files get the plain relative ids, as they always did.
    assert ids([b]) == ["s/y.md", "x.txt"]
    assert discover([b], stored={}) == discover([b])


def test_a_name_another_stored_file_holds_is_not_taken(tmp_path: Path) -> None:
    a, b = tree(tmp_path / "A", "x.txt"), tree(tmp_path / "B", "x.txt")
    assert ids([b], {"x.txt": str(a / "x.txt")}) == ["B/x.txt"]
    # ... nor one a .jsonl record, or a document added from memory, holds.
    (tmp_path / "r.jsonl").write_text('{"id": "x.txt", "text": "A record."}\n')
    assert ids([b], {"x.txt": str(tmp_path / "r.jsonl")}) == ["B/x.txt"]
    assert ids([b], {"x.txt": "x.txt"}) == ["B/x.txt"]


def test_a_stored_file_keeps_its_id_whatever_the_run_gives(tmp_path: Path) -> None:
    a, b = tree(tmp_path / "A", "x.txt", "s/y.md"), tree(tmp_path / "B", "x.txt")
    # B indexed first, then A: A's x.txt is stored as "A/x.txt".
    stored = {"x.txt": str(b / "x.txt"), "A/x.txt": str(a / "x.txt"),
              "s/y.md": str(a / "s" / "y.md")}
    assert ids([a, b], stored) == ["s/y.md", "A/x.txt", "x.txt"]
    assert ids([b, a], stored) == ["x.txt", "s/y.md", "A/x.txt"]
    # Named on its own, or through its parent folder: the same document.
    assert ids([a / "s" / "y.md"], stored) == ["s/y.md"]
    assert ids([tmp_path], stored) == ["s/y.md", "A/x.txt", "x.txt"]


def test_a_name_whose_file_is_gone_is_taken_over(tmp_path: Path) -> None:
    """A folder moved or renamed: its files keep their ids (the next run updates them),
    as they did before ids were kept apart."""
    b = tree(tmp_path / "B", "x.txt")
    assert ids([b], {"x.txt": str(tmp_path / "gone" / "x.txt")}) == ["x.txt"]


def test_a_linked_folder_reaches_the_ids_of_its_files(tmp_path: Path) -> None:
    a = tree(tmp_path / "A", "x.txt")
    (tmp_path / "link").symlink_to(a)
    assert ids([tmp_path / "link"], {"x.txt": str(a / "x.txt")}) == ["x.txt"]


def test_ids_climb_as_far_as_they_must(tmp_path: Path) -> None:
    a, b = tree(tmp_path / "A", "x.txt", "B/x.txt"), tree(tmp_path / "B", "x.txt")
    assert ids([a, b]) == ["B/x.txt", "x.txt", f"{tmp_path.name}/B/x.txt"]
    # A relative path climbs the same way.
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert ids([Path("A"), Path("B")]) == ["B/x.txt", "x.txt",
                                                f"{tmp_path.name}/B/x.txt"]
    finally:
        os.chdir(here)


def test_jsonl_records_keep_their_own_ids(tmp_path: Path) -> None:
    for folder in ("A", "B"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "r.jsonl").write_text(f'{{"id": "r1", "text": "{folder}."}}\n')
    assert ids([tmp_path / "A", tmp_path / "B"]) == ["r1", "r1"]
