"""Section paths: where each heading's section starts in a text, and the path of
headings above an offset (Markdown and HTML readers make them; passages and citations
read them)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

SECTION_SEPARATOR = " › "


def section_at(sections: Sequence[Sequence[Any]], offset: int) -> str:
    """The heading path that ``offset`` falls under ("" before the first heading).

    >>> section_at([[0, "A"], [10, "A › B"]], 12)
    'A › B'
    """
    i = bisect_right([s[0] for s in sections], offset) - 1
    return str(sections[i][1]) if i >= 0 else ""
