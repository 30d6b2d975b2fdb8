"""Markdown: the title (the first ``# heading``) and the section of every heading; the
text itself is kept exactly as written."""

from __future__ import annotations

import re
from typing import Any

from ragmem.documents.files import Deadline
from ragmem.documents.sections import SECTION_SEPARATOR
from ragmem.documents.text import TITLE_CHARS

# What starts a title line ("# Title") and a heading line ("## The Bank ##"). The rest
# of a line is read by string methods: the one-regex forms of both (a lazy group before
# optional trailing blanks) took 21 s on a line of 40,000 blanks, quadratic.
_TITLE_START = re.compile(r"^#[ \t]+", re.M)
_ATX_START = re.compile(r"[ \t]{0,3}(#{1,6})(?=[ \t]|$)")
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_CHECK_EVERY = 4096  # lines between two looks at the deadline


def markdown_title(text: str) -> str:
    """The first ``# Title`` line's title: ``"# The Guide #"`` -> ``"The Guide"``."""
    for start in _TITLE_START.finditer(text):
        end = text.find("\n", start.end())
        rest = text[start.end():end if end >= 0 else len(text)]
        if rest:  # the title, less trailing blanks and #s (but never nothing)
            return (rest.rstrip(" \t#") or rest[0]).strip()[:TITLE_CHARS]
        if len(start.group()) > 2:  # "#  ": a title of blanks
            return ""
    return ""


def atx_heading(text: str, pos: int, end: int) -> tuple[int, str] | None:
    """``(level, title)`` of an ATX heading line, else None: ``"## The Bank ##"`` ->
    ``(2, "The Bank")``; the closing #s go only after a blank (``"## C#"`` keeps its #)."""
    if not (m := _ATX_START.match(text, pos, end)):
        return None
    body = text[m.end():end].rstrip(" \t")
    if (opened := body.rstrip("#")) != body and opened[-1:] in (" ", "\t"):
        body = opened  # a closing run of #s
    return len(m.group(1)), " ".join(body.split())


def markdown_sections(text: str, deadline: Deadline | None = None) -> list[list[Any]]:
    """Where each section of a Markdown text starts, with its heading path.

    >>> markdown_sections("# Chapter II\\n## The Bank\\nVault.\\n```\\n# code\\n```")
    [[0, 'Chapter II'], [13, 'Chapter II › The Bank']]

    ``[[offset, path], ...]``: from ``offset`` on (to the next entry), the text is under
    ``path``. Headings inside fenced code are not headings.
    """
    stack: list[tuple[int, str]] = []
    sections: list[list[Any]] = []
    fence = ""
    pos = 0
    lines = 0
    while pos <= len(text):  # line by line, without copying the lines out
        lines += 1
        if deadline and lines % _CHECK_EVERY == 0:
            deadline.check()
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if m := _FENCE.match(text, pos, end):
            marker = m.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
        elif not fence and (h := atx_heading(text, pos, end)):
            level, title = h
            while stack and stack[-1][0] >= level:
                stack.pop()
            if title:
                stack.append((level, title))
            sections.append([pos, SECTION_SEPARATOR.join(t for _, t in stack)])
        pos = end + 1
    return sections
