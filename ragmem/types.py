"""Frozen records that flow between the pipeline stages.

Offsets are always character offsets into ``Document.text``:
``document.text[sentence.start:sentence.end] == sentence.text`` holds for every
sentence, window and passage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    doc_id: str
    path: str
    text: str
    title: str = ""
    mtime: float = 0.0
    content_hash: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)  # slots: a big document has ~10^6 of them
class Sentence:
    doc_id: str
    index: int  # position of the sentence within its document
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Window:
    """A run of consecutive whole sentences ``[first, last]`` of one document."""

    doc_id: str
    index: int  # position of the window within its document
    first: int  # index of the first sentence
    last: int  # index of the last sentence (inclusive)
    start: int
    end: int
    text: str
    n_tokens: int = 0


@dataclass(frozen=True)
class Filter:
    """Which documents a search may return; applied inside FAISS, not by over-fetching.

    All given conditions must hold: ``doc_ids`` (any of), ``path_glob`` (a glob on the
    document id or its source path, e.g. ``"papers/*.pdf"``), ``metadata`` (equal values).
    """

    doc_ids: tuple[str, ...] | None = None
    path_glob: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One window found by the long-term memory for a question."""

    window_id: int
    doc_id: str
    score: float
    first: int
    last: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Passage:
    """Evidence handed to the working memory: a contiguous span of one document."""

    doc_id: str
    path: str
    start: int
    end: int
    score: float
    sentences: tuple[Sentence, ...]
    # (offset, heading path) where the document's sections start, from the one the
    # passage begins in: a Markdown or HTML document's "Chapter II › The Bank".
    sections: tuple[tuple[int, str], ...] = ()

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    @property
    def section(self) -> str:
        """The heading path the passage begins under ("" when there is none)."""
        return self.section_at(self.start)

    def section_at(self, offset: int) -> str:
        path = ""
        for start, name in self.sections:
            if start > offset:
                break
            path = name
        return path


@dataclass(frozen=True)
class Citation:
    number: int  # the [n] the answer uses
    doc_id: str
    path: str
    start: int
    end: int
    quote: str
    section: str = ""  # heading path of the quote ("Chapter II › The Bank"), if any


@dataclass(frozen=True)
class Timings:
    retrieve_s: float = 0.0
    fill_s: float = 0.0
    generate_s: float = 0.0


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]  # the numbered passages, [1] first
    prompt: str
    dropped: tuple[str, ...] = ()  # what the working memory left out, and why
    timings: Timings = Timings()
    tokens_used: int = 0  # prompt tokens, in the generator's tokenizer
    token_budget: int = 0  # what the prompt was allowed
    mode: str = "generate"  # "extract": the text is a verbatim span, cited by its offsets
    abstained: bool = False  # the evidence does not support an answer; the text says so
    confidence: float | None = None  # extract: the chosen span's estimated chance of being right
    # The best evidence, shown when there is no citation (an abstention, or generated text
    # that cites nothing): where to look, not a claim that the answer rests on it.
    suggestions: tuple[Citation, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [vars(c) for c in self.citations],
            "passages": [
                {"number": i, "doc_id": p.doc_id, "path": p.path, "section": p.section,
                 "start": p.start, "end": p.end, "score": p.score, "text": p.text}
                for i, p in enumerate(self.passages, start=1)
            ],
            "mode": self.mode,
            "abstained": self.abstained,
            "confidence": self.confidence,
            "suggestions": [vars(c) for c in self.suggestions],
            "dropped": list(self.dropped),
            "tokens_used": self.tokens_used,
            "token_budget": self.token_budget,
            "timings": vars(self.timings),
        }
