"""Tests for ragmem.documents: each format from tiny files, the errors, discovery."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from ragmem.documents import discover, iter_documents, load_file, section_at
from ragmem.errors import DocumentError


def write_pdf(path: Path, pages: list[str], title: str | None = None,
              user_password: str | None = None, owner_password: str | None = None) -> Path:
    """A real PDF whose pages carry a Helvetica text layer (empty string: a blank page)."""
    writer = PdfWriter()
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })
    for text in pages:
        page = writer.add_blank_page(612, 792)
        if not text:
            continue
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    if title:
        writer.add_metadata({"/Title": title})
    if user_password is not None:
        writer.encrypt(user_password, owner_password, algorithm="RC4-128")
    writer.write(path)
    return path


def load_one(path: Path) -> object:
    [doc] = load_file(path, path.parent)
    return doc


def test_txt_keeps_text_exact_but_normalises_newlines(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\n  First line is the title\r\nsecond\rthird\n")
    [doc] = load_file(path, tmp_path)
    assert doc.text == "\n  First line is the title\nsecond\nthird\n"
    assert doc.title == "First line is the title"
    assert doc.doc_id == "notes.txt"
    assert doc.path == os.path.abspath(path)
    assert doc.content_hash == hashlib.sha256(doc.text.encode()).hexdigest()
    assert doc.mtime == path.stat().st_mtime
    assert doc.metadata == {"suffix": ".txt"}


def test_txt_title_truncated_and_bom_dropped(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"\xef\xbb\xbf" + b"x" * 300)
    [doc] = load_file(path, tmp_path)
    assert doc.text == "x" * 300
    assert doc.title == "x" * 120


def test_markdown_title_is_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("intro line\n## Sub\n# The Guide #\nbody\n# Later\n", encoding="utf-8")
    [doc] = load_file(path, tmp_path)
    assert doc.title == "The Guide"
    assert doc.metadata["suffix"] == ".md"


def test_html_drops_scripts_and_keeps_blocks(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title> A  Page </title><style>p {color: red}</style></head>"
        "<body><script>var x = 1;</script><h1>Heading</h1>\n"
        "<p>First   paragraph\n spans lines.<br>After break.</p><!-- note -->"
        "<ul><li>one</li><li>two <b>bold</b></li></ul>"
        "<pre>  code\n    indented</pre></body></html>",
        encoding="utf-8",
    )
    [doc] = load_file(path, tmp_path)
    assert doc.title == "A Page"
    assert doc.text == (
        "Heading\n\nFirst paragraph spans lines.\nAfter break.\n\none\n\ntwo bold\n\n"
        "  code\n    indented"
    )


def test_html_without_head_keeps_title_out_of_text(tmp_path: Path) -> None:
    path = tmp_path / "bare.html"
    path.write_text("<title>T</title><div>Body <i>text</i></div>", encoding="utf-8")
    [doc] = load_file(path, tmp_path)
    assert (doc.title, doc.text) == ("T", "Body text")


def test_html_honours_declared_charset_and_falls_back_to_h1(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    path.write_bytes(
        b'<html><head><meta charset="iso-8859-1"></head><body><h1>Caf\xe9</h1></body></html>'
    )
    [doc] = load_file(path, tmp_path)
    assert doc.text == "Café"
    assert doc.title == "Café"


def test_pdf_text_layer_pages_and_title(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "paper.pdf", ["Hello PDF world.", "", "Second page."],
                     title="My Paper")
    [doc] = load_file(path, tmp_path)
    assert doc.text == "Hello PDF world.\n\nSecond page."
    assert doc.title == "My Paper"
    assert doc.metadata == {"suffix": ".pdf", "pages": 3, "page_starts": [0, 18, 18]}


def test_pdf_title_falls_back_to_stem(tmp_path: Path) -> None:
    [doc] = load_file(write_pdf(tmp_path / "report.pdf", ["Text."]), tmp_path)
    assert doc.title == "report"


def test_pdf_with_owner_password_only_opens(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "locked.pdf", ["Readable."], user_password="",
                     owner_password="owner")
    [doc] = load_file(path, tmp_path)
    assert doc.text == "Readable."


def test_pdf_encrypted(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "secret.pdf", ["Hidden."], user_password="pw")
    with pytest.raises(DocumentError, match="encrypted: decrypt it first"):
        load_file(path, tmp_path)


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(DocumentError, match=r"has no text layer \(scanned\?\).*OCR it first"):
        load_file(path, tmp_path)


def test_pdf_garbage(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"this is not a pdf at all")
    with pytest.raises(DocumentError, match="broken.pdf"):
        load_file(path, tmp_path)


def test_jsonl_one_document_per_record(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    lines = [
        {"id": 7, "text": "Seven.\r\nLine two.", "title": "Lucky", "source": "web"},
        {"id": "b", "text": "Bee."},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines[:1]) + "\n\n"
                    + json.dumps(lines[1]) + "\n", encoding="utf-8")
    a, b = load_file(path, tmp_path)
    assert (a.doc_id, a.title, a.text) == ("7", "Lucky", "Seven.\nLine two.")
    assert a.metadata == {"source": "web", "suffix": ".jsonl", "line": 1}
    assert (b.doc_id, b.title, b.metadata["line"]) == ("b", "b", 3)
    assert a.path == b.path == os.path.abspath(path)


def test_jsonl_beir_corpus_lines(tmp_path: Path) -> None:
    """A BEIR corpus.jsonl ("_id", "title", "text") indexes as it is."""
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"_id": "4983", "title": "White matter", "text": "Body.",
                                "metadata": {}}) + "\n", encoding="utf-8")
    (doc,) = load_file(path, tmp_path)
    assert (doc.doc_id, doc.title, doc.text) == ("4983", "White matter", "Body.")
    assert "_id" not in doc.metadata


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', 'needs an object with "id"'),
        ('{"id": 1}', 'needs an object with "id"'),
        ('{"_id": 1}', 'needs an object with "id"'),
        ('{"id": 1, "text": "  "}', '"text" is empty'),
        ('{"id": null, "text": "x"}', '"id" must be a non-empty string or an integer'),
        ('{"id": 0, "text": "dup"}', "duplicate id '0'"),
    ],
)
def test_jsonl_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 0, "text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=f"bad.jsonl:2: {message}"):
        load_file(path, tmp_path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", "is empty"),
        ("blank.md", b" \n\t\r\n", "is empty"),
        ("bom.txt", b"\xef\xbb\xbf\n", "is empty"),
        ("tags.html", b"<html><script>x()</script></html>", "is empty"),
        ("blob.txt", b"abc\x00\x01\x02", "NUL bytes"),
        ("utf16.txt", "hi".encode("utf-16"), "NUL bytes"),
        ("latin.txt", b"caf\xe9", "is not UTF-8 text .*re-save it as UTF-8"),
        ("empty.jsonl", b"\n\n \n", "is empty"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DocumentError, match=message) as info:
        load_file(path, tmp_path)
    assert name in str(info.value) and "\n" not in str(info.value)


def make_tree(root: Path) -> None:
    files = {
        "b.txt": "bee", "a/z.md": "# Zed", "a/b/c.html": "<p>deep</p>", "a.txt": "ay",
        ".hidden.txt": "no", ".git/x.txt": "no", "a/.cache/y.md": "no",
        "image.png": "no", "README.MARKDOWN": "yes",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_discover_walks_sorted_and_skips_hidden(tmp_path: Path) -> None:
    make_tree(tmp_path)
    pairs = discover([tmp_path, tmp_path / "a" / "z.md"])  # second one is a duplicate
    assert [f.relative_to(root).as_posix() for root, f in pairs] == [
        "README.MARKDOWN", "a/b/c.html", "a/z.md", "a.txt", "b.txt",
    ]
    assert {root for root, _ in pairs} == {tmp_path}
    assert discover([str(tmp_path / "a" / "z.md")]) == [(tmp_path / "a", tmp_path / "a" / "z.md")]


def test_doc_ids_are_stable_relative_posix_paths(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ids = [d.doc_id for d in iter_documents([tmp_path])]
    assert ids == ["README.MARKDOWN", "a/b/c.html", "a/z.md", "a.txt", "b.txt"]
    assert [d.doc_id for d in iter_documents([str(tmp_path)])] == ids
    [doc] = iter_documents([tmp_path / "a" / "b" / "c.html"])
    assert doc.doc_id == "c.html"


def test_missing_path_and_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="nope: no such file or folder; check the path"):
        discover([tmp_path / "nope"])
    (tmp_path / "x.docx").write_text("hi")
    with pytest.raises(DocumentError, match="unsupported file type '.docx'; supported: .txt"):
        discover([tmp_path / "x.docx"])


def test_iter_documents_continues_past_bad_files(tmp_path: Path) -> None:
    (tmp_path / "1.txt").write_text("one")
    (tmp_path / "2.txt").write_bytes(b"\xff\xfe bad")
    (tmp_path / "3.txt").write_text("three")
    errors: list[tuple[Path, str]] = []
    docs = list(iter_documents([tmp_path, tmp_path / "missing"],
                               on_error=lambda p, e: errors.append((p, str(e)))))
    assert [d.text for d in docs] == ["one", "three"]
    assert [p.name for p, _ in errors] == ["2.txt", "missing"]
    assert "not UTF-8" in errors[0][1]
    with pytest.raises(DocumentError, match="2.txt"):
        list(iter_documents([tmp_path]))


def test_special_files_are_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.txt")  # reading it would block forever
    (tmp_path / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    (tmp_path / "ok.txt").write_text("Fine text.")
    (tmp_path / "link.txt").symlink_to(tmp_path / "ok.txt")
    errors: dict[str, str] = {}
    docs = list(iter_documents([tmp_path],
                               on_error=lambda p, e: errors.update({p.name: e.reason})))
    assert [d.doc_id for d in docs] == ["link.txt"]  # one file under two names: read once
    assert errors["x.txt"].startswith("is a named pipe, not a regular file")
    assert errors["zero.txt"].startswith("is a character device (/dev/zero)")
    assert errors["loop.txt"].startswith("is a symlink loop")
    assert errors["gone.txt"].startswith("is a broken symlink")
    for name in ("x.txt", "zero.txt", "loop.txt"):  # named directly, too
        with pytest.raises(DocumentError, match=f"{name}: is a"):
            load_file(tmp_path / name, tmp_path)


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 1000)
    with pytest.raises(DocumentError, match=r"is 0\.0 MB, over the 0\.0 MB limit; split it, "
                       r"or raise the limit: RAGMEM_DOCUMENTS_MAX_FILE_BYTES="):
        load_file(path, tmp_path, max_bytes=4999)
    [doc] = load_file(path, tmp_path, max_bytes=5000)
    assert len(doc.text) == 5000


def test_one_bad_jsonl_line_drops_only_that_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1, "text": "One."}\n{broken\n{"id": 3, "text": "Three."}\n'
                    '{"id": 1, "text": "again"}\n', encoding="utf-8")
    problems: list[DocumentError] = []
    docs = load_file(path, tmp_path, on_problem=problems.append)
    assert [d.doc_id for d in docs] == ["1", "3"]
    assert [p.where for p in problems] == [f"{path}:2", f"{path}:4"]
    assert "not valid JSON" in problems[0].reason and "duplicate id" in problems[1].reason
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("{x\n{y\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"bad.jsonl: has no usable records \(2 bad lines\)"):
        load_file(only_bad, tmp_path, on_problem=problems.append)


def test_markdown_sections_follow_the_heading_tree(tmp_path: Path) -> None:
    text = ("Preamble.\n\n# Chapter I\n\nText one.\n\n```python\n# not a heading\n```\n\n"
            "## The Bank ##\n\nMoney.\n## C# tricks\n   ### Indented\nBody.\n"
            "# Chapter II\n## The Bank\nVault.\n")
    path = tmp_path / "book.md"
    path.write_text(text, encoding="utf-8")
    [doc] = load_file(path, tmp_path)
    sections = doc.metadata["sections"]
    assert [p for _, p in sections] == [
        "Chapter I", "Chapter I › The Bank", "Chapter I › C# tricks",
        "Chapter I › C# tricks › Indented", "Chapter II", "Chapter II › The Bank"]
    assert section_at(sections, 0) == ""  # the preamble is under no heading
    assert section_at(sections, text.index("Vault")) == "Chapter II › The Bank"
    assert section_at(sections, text.index("# not a heading")) == "Chapter I"
    for start, _ in sections:  # each starts at its heading line
        assert text[start:].lstrip(" ").startswith("#")


def test_html_sections_come_from_h1_to_h6(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<p>intro</p><h1>Chapter I</h1><p>a para</p><h2>The <b>Bank</b></h2>"
                    "<p>vault</p><h1>Chapter II</h1><h3>Deep</h3><p>x</p>", encoding="utf-8")
    [doc] = load_file(path, tmp_path)
    sections = doc.metadata["sections"]
    assert [p for _, p in sections] == ["Chapter I", "Chapter I › The Bank", "Chapter II",
                                        "Chapter II › Deep"]
    assert section_at(sections, doc.text.index("vault")) == "Chapter I › The Bank"
    assert section_at(sections, doc.text.index("intro")) == ""
    assert [doc.text[s:].split("\n")[0] for s, _ in sections] == [
        "Chapter I", "The Bank", "Chapter II", "Deep"]


def test_plain_text_has_no_sections(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("# Looks like a heading\nbut this is plain text.")
    [doc] = load_file(path, tmp_path)
    assert "sections" not in doc.metadata
