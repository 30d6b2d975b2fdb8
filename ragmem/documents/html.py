"""HTML -> text, title and heading sections, in one pass over the parser's events.

    >>> text, title, sections = read_html(Path("a.html"), b"<h1>Caves</h1><p>Dark.</p>",
    ...                                   Deadline.start(Path("a.html"), 60))
    >>> text, title, sections
    ('Caves\\n\\nDark.', 'Caves', [[0, 'Caves']])

No tree is built and nothing recurses: an element costs one name on a stack while it is
open. (The reader used to walk a BeautifulSoup tree recursively: a file of 100,000
nested tags ended the whole run with a RecursionError, after 49 s and 0.9 GB.)

The text is the one that walk gave. The events are those of the stdlib ``html.parser``
that BeautifulSoup's "html.parser" builder drives, read by that builder's rules: an end
tag closes every element opened after its start tag and a stray one is ignored; a void
element (``<br>``) closes at once, and swallows one later ``</br>``; entities are
decoded as it decodes them; text runs end at any tag, comment or declaration.
``tests/test_html.py`` holds the old walk and checks the two agree.

Two bounds the old walk did not have, both far from real headings: a heading's title
(its section path) ends where a heading nested inside it starts, and is cut to
``HEADING_CHARS`` (the old walk gave every one of 100,000 nested headings the rest of
the file as its title: quadratic); the title of the page comes from the first
``TEXT_CHARS`` characters of its ``<title>`` or first ``<h1>``.
"""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ragmem.documents.files import Deadline
from ragmem.documents.sections import SECTION_SEPARATOR
from ragmem.documents.text import TITLE_CHARS, normalise
from ragmem.errors import DocumentError

HEADING_CHARS = 200
TEXT_CHARS = 2_000  # raw characters of an element read for a title: far above any title

_DROP = frozenset({"script", "style", "noscript", "template", "head", "title"})
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_BLOCKS = frozenset(
    "address article aside blockquote caption dd details div dl dt figcaption figure footer"
    " form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tr ul"
    .split()
)
# As BeautifulSoup's HTMLTreeBuilder: elements that close at once; elements whose text
# is a string of its own kind (none of it counts in a heading's or the page's title);
# elements inside which whitespace-only text is kept as it is.
_VOID = frozenset(
    "area base basefont bgsound br col command embed frame hr image img input isindex keygen"
    " link menuitem meta nextid param source spacer track wbr".split()
)
_CONTAINERS = frozenset({"rt", "rp", "style", "script", "template"})
_PRESERVE = frozenset({"pre", "textarea"})
_ASCII_SPACES = " \n\t\x0c\r"
# Events between two looks at the clock. Few: where html.parser is slow (quadratic on
# some unterminated markup: CVE-2025-6069), each event follows a scan to the end.
_CHECK_EVERY = 16
_SPACES = re.compile(r"\s+")
_NUMBER = {10: re.compile("([0-9]+)(.*)"), 16: re.compile("([0-9a-f]+)(.*)")}


def read_html(path: Path, data: bytes, deadline: Deadline) -> tuple[str, str, list[list[Any]]]:
    """``(text, title, sections)`` of an HTML file's bytes (``<meta charset>`` honoured).

    Blocks (paragraphs, headings, list items, rows) are separated by a blank line;
    ``<pre>`` keeps its lines; script, style, head and the like are left out.
    """
    from bs4.dammit import UnicodeDammit

    markup = UnicodeDammit(data, known_definite_encodings=[], user_encodings=[],
                           is_html=True).unicode_markup
    if markup is None:
        raise DocumentError(path, "is not text in any encoding ragmem knows; re-save it as "
                            "UTF-8")
    reader = _Reader(deadline)
    try:
        reader.feed(markup)
        reader.close()
    except AssertionError as e:  # html.parser's word for markup it cannot go on with
        raise DocumentError(path, f"is not HTML that can be parsed ({e}); fix the markup, "
                            "or save its text as .txt") from e
    return reader.result()


class _Text:
    """The text of one element, as ``get_text(" ")`` joins it, up to ``TEXT_CHARS``."""

    __slots__ = ("depth", "pieces", "size")

    def __init__(self, depth: int) -> None:
        self.depth = depth  # where the element sits on the stack
        self.pieces: list[str] = []
        self.size = 0

    def add(self, piece: str) -> None:
        if self.size < TEXT_CHARS:
            self.pieces.append(piece[:TEXT_CHARS - self.size])
            self.size += len(self.pieces[-1])

    def words(self) -> str:
        return " ".join(" ".join(self.pieces).split())


class _Reader(HTMLParser):
    """The parser's events -> paragraphs, headings and the title; see the module."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__(convert_charrefs=False)  # entities decoded here, as bs4 does
        self.deadline = deadline
        self.ticks = _CHECK_EVERY
        self.stack: list[str] = []  # names of the open elements, outermost first
        self.open: Counter[str] = Counter()
        self.void_closed: Counter[str] = Counter()  # end tags a void element swallows
        self.pending: list[str] = []  # text of the run not yet ended by a tag
        self.preserve = self.containers = self.pre = 0  # open elements of these kinds
        self.dropped_at = -1  # depth of the open element whose content is left out
        self.paragraphs: list[str] = []
        self.run: list[str] = []
        self.run_in_pre = False
        self.headings: list[list[Any]] = []  # [paragraph index, level, title]
        self.heading: tuple[_Text, list[Any]] | None = None  # whose title is being read
        self.title: _Text | None = None  # the first <title>
        self.h1: _Text | None = None  # the first <h1>, the title when <title> has none

    def result(self) -> tuple[str, str, list[list[Any]]]:
        self._end_text()
        while self.stack:
            self._pop()
        self._close_paragraph()
        paragraphs = [normalise(p) for p in self.paragraphs]
        title = self.title.words() if self.title else ""
        if not title and self.h1:
            title = self.h1.words()
        return ("\n\n".join(paragraphs), title[:TITLE_CHARS],
                _sections(paragraphs, self.headings))

    # -- the parser's events -----------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._end_text()
        self._push(tag)
        if tag in _VOID:
            self._pop_to(tag)
            self.void_closed[tag] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._end_text()
        self._push(tag)
        self._pop_to(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.void_closed[tag]:  # "<br>...</br>": the end tag of one already closed
            self.void_closed[tag] -= 1
            return
        self._end_text()
        self._pop_to(tag)

    def handle_data(self, data: str) -> None:
        self._tick()
        self.pending.append(data)

    def handle_entityref(self, name: str) -> None:
        from bs4.dammit import EntitySubstitution

        self.handle_data(EntitySubstitution.HTML_ENTITY_TO_CHARACTER.get(name, f"&{name}"))

    def handle_charref(self, name: str) -> None:
        base = 16 if name[:1] in "xX" else 10
        digits = name[1:] if base == 16 else name
        try:
            number, rest = int(digits, base), ""
        except ValueError:  # "&#12ab;": the number, then the rest as text
            if not (m := _NUMBER[base].match(digits)):
                self.handle_data("")  # as bs4: an empty string, then the rest as text
                self.handle_data(digits)
                return
            number, rest = int(m.group(1), base), m.group(2)
        self.handle_data(_character(number))
        self.handle_data(rest)

    def handle_comment(self, data: str) -> None:
        self._end_text()

    def handle_decl(self, decl: str) -> None:
        self._end_text()

    def handle_pi(self, data: str) -> None:
        self._end_text()

    def unknown_decl(self, data: str) -> None:
        self._end_text()
        if data.upper().startswith("CDATA["):  # in no paragraph, but in a title
            self._titles(data[len("CDATA["):])

    # -- the tree, as a stack of names --------------------------------------------

    def _push(self, name: str) -> None:
        depth = len(self.stack)
        self.stack.append(name)
        self.open[name] += 1
        self.preserve += name in _PRESERVE
        self.containers += name in _CONTAINERS
        if name == "title" and self.title is None:
            self.title = _Text(depth)
        if name == "h1" and self.h1 is None:
            self.h1 = _Text(depth)
        if self.dropped_at >= 0:
            return
        if name in _DROP:
            self.dropped_at = depth
        elif name == "br":
            self.run.append("\n")
        elif name in ("td", "th"):
            self.run.append(" ")
        elif name in _BLOCKS:
            self._close_paragraph()
            self.pre += name == "pre"
            if name in _HEADINGS:
                heading = [len(self.paragraphs), int(name[1]), ""]
                self.headings.append(heading)
                self._end_heading()  # a heading inside a heading ends its title here
                self.heading = (_Text(depth), heading)

    def _pop_to(self, name: str) -> None:
        """Close the latest ``name`` and all opened after it; nothing if none is open."""
        while self.open[name]:
            if self._pop() == name:
                return

    def _pop(self) -> str:
        name = self.stack.pop()
        depth = len(self.stack)
        self.open[name] -= 1
        self.preserve -= name in _PRESERVE
        self.containers -= name in _CONTAINERS
        if self.title and self.title.depth == depth:
            self.title.depth = -1  # read: no later <title> counts
        if self.h1 and self.h1.depth == depth:
            self.h1.depth = -1
        if self.dropped_at >= 0:
            if self.dropped_at == depth:
                self.dropped_at = -1
            return name
        if name in _BLOCKS:
            self.pre -= name == "pre"
            self._close_paragraph()
        if self.heading and self.heading[0].depth == depth:
            self._end_heading()
        return name

    def _end_heading(self) -> None:
        if self.heading:
            text, heading = self.heading
            heading[2] = text.words()[:HEADING_CHARS]
            self.heading = None

    # -- text ---------------------------------------------------------------------

    def _end_text(self) -> None:
        """End the current run of text, as BeautifulSoup's ``endData``: the string it
        makes belongs to the elements open now."""
        self._tick()
        if not self.pending:
            return
        text = "".join(self.pending)
        self.pending = []
        if not self.preserve and not text.strip(_ASCII_SPACES):
            text = "\n" if "\n" in text else " "
        if not self.containers:
            self._titles(text)
        if self.dropped_at < 0:
            in_pre = self.pre > 0
            self.run.append(text if in_pre else _SPACES.sub(" ", text))
            self.run_in_pre |= in_pre

    def _tick(self) -> None:
        """Look at the clock every ``_CHECK_EVERY`` events (each look costs half a
        microsecond; a 14 MB page has 6 million events)."""
        self.ticks -= 1
        if self.ticks <= 0:
            self.ticks = _CHECK_EVERY
            self.deadline.check()

    def _titles(self, text: str) -> None:
        if text:
            for element in (self.title, self.h1, self.heading[0] if self.heading else None):
                if element is not None and element.depth >= 0:
                    element.add(text)

    def _close_paragraph(self) -> None:
        """A block starts or ends: the text run so far is a paragraph, if it has text."""
        lines = "".join(self.run).split("\n")
        text = "\n".join(s.rstrip() if self.run_in_pre else s.strip() for s in lines)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
        if text.strip():
            self.paragraphs.append(text)
        self.run.clear()
        self.run_in_pre = False


def _character(number: int) -> str:
    """A numeric character reference, as HTML5 reads it: ``&#150;`` is windows-1252's
    en dash, an impossible one is U+FFFD."""
    if number == 0 or number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
        return "\ufffd"
    if 0x80 <= number <= 0x9F:
        try:
            return bytes([number]).decode("cp1252")
        except UnicodeDecodeError:
            pass
    return chr(number)


def _sections(paragraphs: list[str], headings: list[list[Any]]) -> list[list[Any]]:
    """``[[offset, path], ...]`` from each heading's paragraph index, level and title."""
    starts = [0]
    for p in paragraphs:
        starts.append(starts[-1] + len(p) + 2)
    stack: list[tuple[int, str]] = []
    sections: list[list[Any]] = []
    for index, level, title in headings:
        while stack and stack[-1][0] >= level:
            stack.pop()
        if title:
            stack.append((level, title))
        # A heading after the last paragraph starts at the end of the text, not past it.
        at = min(starts[min(index, len(paragraphs))], starts[-1] - 2) if paragraphs else 0
        path = SECTION_SEPARATOR.join(t for _, t in stack)
        if sections and sections[-1][0] == at:
            sections[-1][1] = path  # an empty heading: no paragraph of its own
        elif not sections or sections[-1][1] != path:
            sections.append([at, path])
    return sections
