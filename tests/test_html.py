"""The HTML reader: one pass over the parser's events, checked against the recursive
BeautifulSoup walk it replaced (kept here as the oracle), and on nesting that walk
could not survive."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragmem.documents import load_file, section_at
from ragmem.documents.files import Deadline
from ragmem.documents.html import HEADING_CHARS, read_html

# -- the oracle: the reader as it was (ragmem/documents.py before the package) --------

_DROP = frozenset({"script", "style", "noscript", "template", "head", "title"})
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_BLOCKS = frozenset(
    "address article aside blockquote caption dd details div dl dt figcaption figure footer"
    " form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tr ul"
    .split()
)


def walked(data: bytes) -> tuple[str, str, list[list[Any]]]:
    """The old reader: a BeautifulSoup tree, walked recursively."""
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import PreformattedString

    from ragmem.documents.html import _sections

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    paragraphs: list[str] = []
    run: list[str] = []
    in_pre_run = False
    headings: list[list[Any]] = []

    def close() -> None:
        nonlocal in_pre_run
        lines = "".join(run).split("\n")
        text = "\n".join(s.rstrip() if in_pre_run else s.strip() for s in lines)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
        if text.strip():
            paragraphs.append(text)
        run.clear()
        in_pre_run = False

    def walk(node: Tag, in_pre: bool) -> None:
        nonlocal in_pre_run
        for child in node.children:
            if isinstance(child, PreformattedString):
                continue
            if isinstance(child, NavigableString):
                run.append(str(child) if in_pre else re.sub(r"\s+", " ", child))
                in_pre_run |= in_pre
            elif isinstance(child, Tag) and child.name not in _DROP:
                if child.name == "br":
                    run.append("\n")
                elif child.name in ("td", "th"):
                    run.append(" ")
                    walk(child, in_pre)
                elif child.name in _BLOCKS:
                    close()
                    if child.name in _HEADINGS:
                        headings.append([len(paragraphs), int(child.name[1]),
                                         " ".join(child.get_text(" ").split())])
                    walk(child, in_pre or child.name == "pre")
                    close()
                else:
                    walk(child, in_pre)

    walk(soup, False)
    close()
    paragraphs = [p.replace("\r\n", "\n").replace("\r", "\n") for p in paragraphs]
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(" ", strip=True)
    return ("\n\n".join(paragraphs), " ".join(title.split())[:120],
            _sections(paragraphs, headings))


def read(data: bytes) -> tuple[str, str, list[list[Any]]]:
    return read_html(Path("page.html"), data, Deadline.start(Path("page.html")))


# The HTML of the other tests, and pages in the shapes real ones take.
FIXTURES = [
    "<html><head><title> A  Page </title><style>p {color: red}</style></head>"
    "<body><script>var x = 1;</script><h1>Heading</h1>\n<p>First   paragraph\n spans "
    "lines.<br>After break.</p><!-- note --><ul><li>one</li><li>two <b>bold</b></li></ul>"
    "<pre>  code\n    indented</pre></body></html>",
    "<title>T</title><div>Body <i>text</i></div>",
    '<html><head><meta charset="iso-8859-1"></head><body><h1>Caf\xe9</h1></body></html>',
    "<p>intro</p><h1>Chapter I</h1><p>a para</p><h2>The <b>Bank</b></h2><p>vault</p>"
    "<h1>Chapter II</h1><h3>Deep</h3><p>x</p>",
    "<h1>Notes</h1><h2>Cellars</h2><p>A cellar is a room below ground.</p>",
    "<html><script>x()</script></html>",
    "<p>deep</p>",
    "<!DOCTYPE html>\n<html lang=en>\n  <head>\n    <meta charset=utf-8>\n    <title>The "
    "Red-Headed League &mdash; Chapter&nbsp;II</title>\n  </head>\n  <body>\n    <nav><ul>"
    "<li><a href=#1>One</a><li><a href=#2>Two</a></ul></nav>\n    <article>\n      <h1>"
    "Chapter II</h1>\n      <p>The robbers &amp; the <em>bank</em>&#8217;s cellar.\n"
    "      <p>Unclosed paragraph, then a table:\n      <table><tr><th>Name<th>Age<tr><td>"
    "Holmes<td>60</table>\n      <h2 id=x>The <code>Cellar</code> <!-- draft --></h2>\n"
    "      <pre><code>  def f():\r\n      return 1\n</code></pre>\n      <p>Ruby: <ruby>"
    "漢<rp>(</rp><rt>kan</rt><rp>)</rp></ruby>; <img src=a.png alt=x> end.<br/>line"
    "</br>two\n    </article>\n    <footer>&copy; 2026 &unknown; &#150; &#x1F600; &#0;"
    "</footer>\n  </body>\n</html>\n",
    "<?xml version='1.0'?><html xmlns='http://www.w3.org/1999/xhtml'><body><h3>X"
    "<![CDATA[cdata]]></h3><p>a<textarea>  \n </textarea>b</p><template><h1>t</h1>"
    "</template><noscript><h2>n</h2></noscript></body></html>",
]


@pytest.mark.parametrize("html", FIXTURES)
def test_the_same_text_title_and_sections_as_the_tree_walk(html: str) -> None:
    data = html.encode("iso-8859-1" if "iso-8859-1" in html else "utf-8")
    assert read(data) == walked(data)


_TAGS = ["p", "div", "h1", "h2", "h3", "li", "ul", "pre", "td", "tr", "table", "b", "i",
         "span", "br", "hr", "img", "script", "style", "title", "head", "noscript",
         "template", "rt", "textarea", "blockquote", "section", "a"]
_TEXT = st.text(st.sampled_from("ab \n\t\r&;#x1<>é\u00a0"), max_size=8)
TOKENS = st.one_of(
    st.sampled_from(_TAGS).map(lambda t: f"<{t}>"),
    st.sampled_from(_TAGS).map(lambda t: f"</{t}>"),
    st.sampled_from(_TAGS).map(lambda t: f"<{t}/>"),
    _TEXT,
    st.sampled_from(["&amp;", "&lt;", "&nbsp;", "&foo;", "&#65;", "&#x41;", "&#150;",
                     "&#0;", "&#xD800;", "<!-- c -->", "<![CDATA[d]]>", "<!DOCTYPE html>",
                     "<?pi x?>", "<p class='a b'>", "\r\n"]),
)


def nested_headings(data: bytes) -> bool:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    return any(h.find(list(_HEADINGS)) for h in soup.find_all(list(_HEADINGS)))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOKENS, max_size=40).map("".join))
def test_any_markup_reads_as_the_tree_walk_read_it(html: str) -> None:
    data = html.encode("utf-8")
    text, title, sections = read(data)
    old_text, old_title, old_sections = walked(data)
    assert (text, title) == (old_text, old_title)
    if not nested_headings(data):  # a heading's title now ends where one inside it starts
        assert sections == old_sections


def test_nested_headings_title_each_their_own_text() -> None:
    text, title, sections = read(b"<h1>Chapter I<h2>The Bank</h2>vault</h1><p>after</p>")
    assert text == "Chapter I\n\nThe Bank\n\nvault\n\nafter"
    assert title == "Chapter I The Bank vault"  # the page's title: the whole first <h1>
    assert [p for _, p in sections] == ["Chapter I", "Chapter I › The Bank"]


def test_a_heading_title_is_cut_to_its_limit() -> None:
    text, _, sections = read(b"<h2>" + b"word " * 1000 + b"</h2><p>body</p>")
    assert len(sections[0][1]) == HEADING_CHARS
    assert text.endswith("\n\nbody")


def nested(depth: int, tag: str = "div", closed: bool = True) -> bytes:
    closing = f"</{tag}>" * depth if closed else ""
    return (f"<p>before</p>{f'<{tag}>' * depth}deep text{closing}<p>after</p>").encode()


@pytest.mark.parametrize(("data", "expected"), [
    (nested(100_000), "before\n\ndeep text\n\nafter"),
    (nested(100_000, closed=False), "before\n\ndeep text\n\nafter"),
    (nested(100_000, "b"), "before\n\ndeep text\n\nafter"),
    (nested(100_000, "pre"), "before\n\ndeep text\n\nafter"),
    (b"<h1>x" * 100_000, None),  # every heading held the rest of the file: quadratic
], ids=["div", "unclosed-div", "b", "pre", "unclosed-h1"])
def test_100k_nested_tags_read_in_seconds(data: bytes, expected: str | None) -> None:
    t0 = time.perf_counter()
    text, _, sections = read(data)
    assert time.perf_counter() - t0 < 20  # ~1.5 s here; the tree walk: RecursionError
    if expected is not None:
        assert text == expected
    else:
        assert text == "\n\n".join(["x"] * 100_000)
        assert all(len(path) <= HEADING_CHARS for _, path in sections)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TOKENS, min_size=1, max_size=60).map("".join))
def test_sections_point_into_the_text(tmp_path: Path, html: str) -> None:
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    try:
        [doc] = load_file(path, tmp_path)
    except Exception as e:  # only "is empty": the reader raises nothing else here
        assert "is empty" in str(e)
        return
    sections = doc.metadata.get("sections", [])
    offsets = [s for s, _ in sections]
    assert offsets == sorted(set(offsets))
    assert all(0 <= s <= len(doc.text) for s in offsets)
    for start, path_ in sections:
        assert section_at(sections, start) == path_
