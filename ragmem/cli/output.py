"""What the commands print: JSON for scripts, and for people an answer with where it
stands in its document."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

from ragmem.errors import RagmemError

if TYPE_CHECKING:
    from ragmem.types import Answer, Citation


def print_json(data: Any) -> None:
    """What every ``--json`` prints: indented, Unicode kept, anything else as ``str``."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def echo_stream(pieces: Iterable[str | Answer]) -> Answer:
    """Print the answer's text as it comes; return the finished Answer."""
    from ragmem.types import Answer

    answer = None
    for piece in pieces:
        if isinstance(piece, Answer):
            answer = piece
        else:
            click.echo(piece, nl=False)
    click.echo()
    if answer is None:
        raise RagmemError("the generator stopped before the answer was complete")
    return answer


def print_citations(answer: Answer) -> None:
    for c in answer.citations:
        quote = c.quote if len(c.quote) <= 160 else c.quote[:157] + "..."
        click.echo(f"[{c.number}] {titled(c.doc_id, c.section)} ({c.path}, chars "
                   f"{c.start}-{c.end}): \"{quote}\"")


def print_span(answer: Answer) -> None:
    """Where an extracted answer stands: its sentence, the answer marked «like this»; an
    abstention names the closest evidence as a place to look, not as support."""
    for c in answer.citations:
        click.echo(f"[{c.number}] {titled(c.doc_id, c.section)} ({c.path}, chars "
                   f"{c.start}-{c.end}):")
        click.echo(f"    {in_context(answer, c)}")
    for c in answer.suggestions:
        click.echo(f"closest evidence (not an answer): [{c.number}] "
                   f"{titled(c.doc_id, c.section)} ({c.path}, chars {c.start}-{c.end}):")
        click.echo(f"    \"{shorten(' '.join(c.quote.split()), 240)}\"")
    if answer.confidence is not None:
        click.echo(f"confidence {answer.confidence:.2f}", err=True)


def in_context(answer: Answer, c: Citation, width: int = 90) -> str:
    """The sentence around the span ``c``, whitespace folded, the answer «marked»."""
    passage = answer.passages[c.number - 1] if 0 < c.number <= len(answer.passages) else None
    sentence = next((s for s in passage.sentences if s.start <= c.start and c.end <= s.end),
                    None) if passage else None
    if sentence is None:
        return f"«{c.quote}»"
    head, tail = sentence.text[:c.start - sentence.start], sentence.text[c.end - sentence.start:]
    before = " ".join(head.split()) + (" " if head[-1:].isspace() else "")
    after = (" " if tail[:1].isspace() else "") + " ".join(tail.split())
    if len(before) > width:
        before = "…" + before[-width:]
    if len(after) > width:
        after = after[:width] + "…"
    return f"\"{before}«{' '.join(c.quote.split())}»{after}\""


def shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def print_passages(answer: Answer) -> None:
    for i, p in enumerate(answer.passages, start=1):
        click.echo(f"[{i}] {titled(p.doc_id, p.section)} {p.start}-{p.end} score "
                   f"{p.score:.3f}\n{p.text}\n")


def titled(doc_id: str, section: str) -> str:
    """``doyle.md › Chapter II › The Bank``: the document, then its heading path."""
    return f"{doc_id} › {section}" if section else doc_id
