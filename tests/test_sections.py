"""Section paths: a Markdown or HTML document's headings reach passages and citations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ragmem.assistant
from ragmem import Assistant
from ragmem.cli import cli
from ragmem.documents import markdown_sections, section_at
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder

BOOK = """# The Red-Headed League

## Chapter I

Mr. Jabez Wilson was a pawnbroker with fiery red hair.

## Chapter II

### The Bank

The robbers were tunnelling into the cellar of the City and Suburban Bank.
"""


@pytest.fixture
def book(tmp_path: Path) -> Path:
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "league.md").write_text(BOOK, encoding="utf-8")
    (folder / "notes.html").write_text(
        "<h1>Notes</h1><h2>Cellars</h2><p>A cellar is a room below ground.</p>",
        encoding="utf-8")
    return folder


def test_passages_and_citations_carry_their_section(book: Path, tmp_path: Path) -> None:
    a = Assistant.create(tmp_path / "idx", ECHO, embedder=KeywordEmbedder(),
                         generator=EchoGenerator())
    a.index([book])
    answer = a.ask("Which bank's cellar were the robbers tunnelling into?")
    top = answer.passages[0]
    assert top.doc_id == "league.md"
    assert top.section_at(BOOK.index("The robbers")) == \
        "The Red-Headed League › Chapter II › The Bank"
    [citation] = [c for c in answer.citations if c.doc_id == "league.md"]
    assert citation.quote.startswith("The robbers")
    assert citation.section == "The Red-Headed League › Chapter II › The Bank"
    notes = [p for p in a.passages("What is a cellar?") if p.doc_id == "notes.html"]
    assert notes and notes[0].section_at(notes[0].end - 1) == "Notes › Cellars"


def test_the_cli_shows_the_section(book: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, echo_mode: None) -> None:
    real_open = Assistant.open

    def with_fakes(cls: type[Assistant], index: str, config: object = None,
                   **_: object) -> Assistant:
        return real_open(index, config, embedder=KeywordEmbedder(),  # type: ignore[arg-type]
                         generator=EchoGenerator())

    monkeypatch.setattr(Assistant, "open", classmethod(with_fakes))
    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder()).index([book])
    question = "Which bank's cellar were the robbers tunnelling into?"
    r = CliRunner().invoke(cli, ["ask", str(tmp_path / "idx"), question, "--no-stream"])
    assert r.exit_code == 0, r.output
    assert "[1] league.md › The Red-Headed League › Chapter II › The Bank (" in r.output
    r = CliRunner().invoke(cli, ["ask", str(tmp_path / "idx"), question, "--json",
                                 "--no-generate"])
    top = json.loads(r.stdout)["passages"][0]
    # A passage's section is the heading path where it begins (the neighbours widen
    # this small book's passage to its start, under the title alone).
    assert top["doc_id"] == "league.md"
    assert top["section"] == section_at(markdown_sections(BOOK), top["start"])
    assert top["section"].startswith("The Red-Headed League")
