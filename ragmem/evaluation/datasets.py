"""Evaluation data in standard formats -> frozen records.

Four formats, each read as published (users bring their own files; nothing is copied):

- BEIR retrieval: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (header row,
  CRLF line endings as BEIR's ``csv.writer`` writes them).
- SQuAD v1.1 / v2.0 JSON. In long-document mode (the default) each article's paragraphs
  are joined with ``"\\n\\n"`` into one document, and every gold answer becomes a
  character span of that document: ``document.text[start:end] == answer``.
- Plain QA JSONL, one question a line: ``question``, ``answers``, optional ``id``,
  ``doc_id``, ``spans`` (``[[start, end], ...]``), ``is_impossible``.
- Long-document multiple choice in the L-Eval layout (QuALITY): ``input`` article,
  ``instructions`` questions with options ``(A)``-``(D)`` inside, ``outputs`` ``"(X) text"``.

Every dataset records the sha256 of the bytes it was read from, so a report names the
exact data it was computed on.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ragmem.errors import RagmemError
from ragmem.types import Document

PARAGRAPH_SEPARATOR = "\n\n"
T = TypeVar("T")


class DatasetError(RagmemError):
    """An evaluation file is missing or not in the format its loader reads."""


@dataclass(frozen=True)
class RetrievalDataset:
    corpus: dict[str, tuple[str, str]]  # doc_id -> (title, text)
    queries: dict[str, str]  # qid -> text; only queries judged in the split
    qrels: dict[str, dict[str, int]]  # qid -> doc_id -> relevance grade
    name: str
    sha256: str


@dataclass(frozen=True)
class QAExample:
    qid: str
    question: str
    answers: tuple[str, ...]  # gold answers in file order, duplicates kept
    doc_id: str | None  # the document holding the evidence, when known
    spans: tuple[tuple[int, int], ...] = ()  # spans[i] is answers[i] in the document
    paragraph_spans: tuple[tuple[int, int], ...] = ()  # the paragraph around spans[i]
    is_impossible: bool = False  # SQuAD v2.0: the document does not answer it
    # Every reference answer the file gives, those not found in the paragraph included
    # (what the official scripts score against); empty when it is ``answers``.
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class QADataset:
    documents: list[Document]
    examples: list[QAExample]
    name: str
    sha256: str
    # Flaws of the file, repaired on load (SQuAD JSON): answers whose answer_start did
    # not point at their text, found again by text; answers found nowhere in their
    # paragraph, dropped; questions left with no answer at all, skipped.
    relocated_answers: int = 0
    dropped_answers: int = 0
    skipped_questions: int = 0

    def notes(self) -> list[str]:
        """The repairs, one line each, for a report (none when the file was clean)."""
        out = []
        if self.relocated_answers:
            out.append(f"{self.relocated_answers} reference answers had an answer_start "
                       "that did not point at their text; each was re-located at the "
                       "occurrence of its text nearest the stated start")
        if self.dropped_answers:
            out.append(f"{self.dropped_answers} reference answers occur nowhere in their "
                       "paragraph: they still count for EM/F1 (as the official scripts "
                       "score) but have no span; "
                       f"{self.skipped_questions} questions left with no answer in their "
                       "paragraph were skipped")
        return out


@dataclass(frozen=True)
class MCExample:
    qid: str
    question: str  # the question stem, options removed
    options: tuple[str, ...]  # option texts, (A) first
    gold: int  # index into options
    doc_id: str


@dataclass(frozen=True)
class MCDataset:
    documents: list[Document]
    examples: list[MCExample]
    name: str
    sha256: str


def sha256_of(*paths: Path) -> str:
    """sha256 of one file's bytes; for several, of their ``sha256sum``-style lines."""
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    if len(digests) == 1:
        return digests[0]
    lines = "".join(f"{d}  {p.name}\n" for d, p in zip(digests, paths, strict=True))
    return hashlib.sha256(lines.encode()).hexdigest()


def select(
    examples: Sequence[T], limit: int | None = None, sample: int | None = None, seed: int = 0
) -> list[T]:
    """The first ``limit`` examples, or a seeded ``sample`` of them kept in file order.

    ``select(range(10), sample=3, seed=0) -> [0, 6, 9]``: the same on every machine.
    """
    if limit is not None and sample is not None:
        raise DatasetError("give limit (first N) or sample (seeded random N), not both")
    for label, n in (("limit", limit), ("sample", sample)):
        if n is not None and n < 0:
            raise DatasetError(f"{label} must be >= 0, got {n}")
    if limit is not None:
        return list(examples[:limit])
    if sample is not None and sample < len(examples):
        kept = sorted(random.Random(seed).sample(range(len(examples)), sample))
        return [examples[i] for i in kept]
    return list(examples)


# BEIR -------------------------------------------------------------------------------


def load_beir(directory: str | Path, split: str = "test") -> RetrievalDataset:
    root = Path(directory)
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for p in (corpus_path, queries_path, qrels_path):
        if not p.is_file():
            splits = sorted(q.stem for q in (root / "qrels").glob("*.tsv"))
            hint = f"; splits found: {', '.join(splits)}" if splits else ""
            raise DatasetError(
                f"{p} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and "
                f"qrels/<split>.tsv{hint}"
            )
    corpus = {
        str(r["_id"]): (str(r.get("title", "")), str(r["text"]))
        for r in _jsonl(corpus_path, required=("_id", "text"))
    }
    qrels = _beir_qrels(qrels_path)
    all_queries = {str(r["_id"]): str(r["text"]) for r in _jsonl(queries_path, ("_id", "text"))}
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        raise DatasetError(
            f"{qrels_path} judges {len(missing)} query ids not in {queries_path}, "
            f"e.g. {missing[0]!r}: use the queries file of the same dataset"
        )
    return RetrievalDataset(
        corpus=corpus,
        queries={qid: all_queries[qid] for qid in qrels},
        qrels=qrels,
        name=f"{root.name}/{split}",
        sha256=sha256_of(corpus_path, queries_path, qrels_path),
    )


def _beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    # splitlines() drops the "\r" of CRLF files, which a split("\n") would keep.
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (n == 1 and line.startswith("query-id")):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DatasetError(
                f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score', got {line!r}"
            )
        try:
            grade = int(parts[2])
        except ValueError:
            raise DatasetError(f"{path}:{n}: score {parts[2]!r} is not an integer") from None
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


# SQuAD ------------------------------------------------------------------------------


def load_squad(path: str | Path, long_document: bool = True) -> QADataset:
    """SQuAD v1.1 or v2.0; one document per article (or per paragraph when not long)."""
    path = Path(path)
    data = _json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path} is not SQuAD JSON: expected {{'version', 'data': [...]}}")
    documents: list[Document] = []
    examples: list[QAExample] = []
    seen_titles: set[str] = set()
    relocated = dropped = skipped = 0
    for a, article in enumerate(data["data"]):
        title = str(article.get("title", f"article-{a}"))
        doc_base = title if title not in seen_titles else f"{title}#{a}"
        seen_titles.add(title)
        contexts = [str(p["context"]) for p in article["paragraphs"]]
        if long_document:
            offsets = _paragraph_offsets(contexts)
            text = PARAGRAPH_SEPARATOR.join(contexts)
            documents.append(_document(doc_base, path, text, title))
        for j, paragraph in enumerate(article["paragraphs"]):
            context = contexts[j]
            if long_document:
                doc_id, shift = doc_base, offsets[j]
            else:
                doc_id, shift = f"{doc_base}#p{j}", 0
                documents.append(_document(doc_id, path, context, title))
            para_span = (shift, shift + len(context))
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                located = [(ans, _answer_span(context, ans))
                           for ans in ([] if impossible else qa.get("answers", []))]
                relocated += sum(moved for _, (_, moved) in located if moved is not None)
                dropped += sum(span is None for _, (span, _) in located)
                answers = [ans for ans, (span, _) in located if span is not None]
                spans = [span for _, (span, _) in located if span is not None]
                if located and not answers:
                    skipped += 1  # no reference answer is in the paragraph: unscorable
                    continue
                examples.append(
                    QAExample(
                        qid=str(qa["id"]),
                        question=str(qa["question"]),
                        answers=tuple(str(ans["text"]) for ans in answers),
                        doc_id=doc_id,
                        spans=tuple((shift + s, shift + e) for s, e in spans),
                        paragraph_spans=tuple(para_span for _ in spans),
                        is_impossible=impossible,
                        references=tuple(str(a["text"]) for a, _ in located)
                        if len(answers) < len(located) else (),
                    )
                )
    return QADataset(documents, examples, name=path.stem, sha256=sha256_of(path),
                     relocated_answers=relocated, dropped_answers=dropped,
                     skipped_questions=skipped)


def _paragraph_offsets(contexts: list[str]) -> list[int]:
    """Start of each paragraph in the joined text: ``["ab", "c"] -> [0, 4]``."""
    offsets, at = [], 0
    for c in contexts:
        offsets.append(at)
        at += len(c) + len(PARAGRAPH_SEPARATOR)
    return offsets


def _answer_span(context: str, answer: dict[str, Any]
                 ) -> tuple[tuple[int, int] | None, bool | None]:
    """The answer's span in its paragraph and whether it had to be re-located:
    ``(None, None)`` when its text is nowhere in the paragraph.

    Real files carry flaws (CMRC 2018 dev: 7 answer_starts that are off, 193 answers,
    often rewritten, that occur nowhere): an answer whose start is off is found again
    at the occurrence of its text nearest the stated start.
    """
    text, start = str(answer["text"]), int(answer["answer_start"])
    if context[start : start + len(text)] == text:
        return (start, start + len(text)), False
    found = [m.start() for m in re.finditer(re.escape(text), context)] if text else []
    if not found:
        return None, None
    start = min(found, key=lambda s: abs(s - start))
    return (start, start + len(text)), True


def _document(doc_id: str, path: Path, text: str, title: str) -> Document:
    return Document(
        doc_id=doc_id,
        path=str(path),
        text=text,
        title=title,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


# Plain QA JSONL ---------------------------------------------------------------------


def load_qa_jsonl(path: str | Path) -> QADataset:
    """One question a line; documents are indexed separately, so none are returned."""
    path = Path(path)
    examples = []
    for n, row in enumerate(_jsonl(path, required=("question", "answers")), start=1):
        answers = row["answers"]
        if isinstance(answers, str):
            answers = [answers]
        spans = tuple((int(s), int(e)) for s, e in row.get("spans", []))
        if spans and len(spans) != len(answers):
            raise DatasetError(
                f"{path}:{n}: {len(spans)} spans for {len(answers)} answers; "
                "give one [start, end] per answer, or none"
            )
        examples.append(
            QAExample(
                qid=str(row.get("id", row.get("qid", n))),
                question=str(row["question"]),
                answers=tuple(str(a) for a in answers),
                doc_id=None if row.get("doc_id") is None else str(row["doc_id"]),
                spans=spans,
                is_impossible=bool(row.get("is_impossible", not answers)),
            )
        )
    return QADataset([], examples, name=path.stem, sha256=sha256_of(path))


# L-Eval multiple choice -------------------------------------------------------------

_OPTION = re.compile(r"\n\s*\(([A-Z])\)\s*")
_GOLD = re.compile(r"\s*\(([A-Z])\)")


def load_leval_mc(path: str | Path) -> MCDataset:
    path = Path(path)
    documents, examples = [], []
    rows = _jsonl(path, required=("input", "instructions", "outputs"))
    for i, row in enumerate(rows):
        doc_id = f"{path.stem}-{i:03d}"
        documents.append(_document(doc_id, path, str(row["input"]), title=doc_id))
        if len(row["instructions"]) != len(row["outputs"]):
            raise DatasetError(f"{path}:{i + 1}: instructions and outputs differ in length")
        for j, (instruction, output) in enumerate(
            zip(row["instructions"], row["outputs"], strict=True)
        ):
            stem, options = _split_options(str(instruction))
            gold = _GOLD.match(str(output))
            letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]
            if not options or gold is None or gold.group(1) not in letters:
                raise DatasetError(
                    f"{path}:{i + 1}: question {j} needs options '(A) ...' on their own "
                    f"lines and an output starting '(X)' with X one of them, got {output!r}"
                )
            examples.append(
                MCExample(f"{doc_id}-{j:02d}", stem, options, letters.index(gold.group(1)), doc_id)
            )
    return MCDataset(documents, examples, name=path.stem, sha256=sha256_of(path))


def _split_options(instruction: str) -> tuple[str, tuple[str, ...]]:
    """``"Q?\\n\\n (A) x \\n (B) y"`` -> ``("Q?", ("x", "y"))``; options must run A, B, ..."""
    marks = list(_OPTION.finditer(instruction))
    if [m.group(1) for m in marks] != [chr(ord("A") + k) for k in range(len(marks))]:
        return instruction.strip(), ()
    ends = [m.start() for m in marks[1:]] + [len(instruction)]
    options = tuple(instruction[m.end() : e].strip() for m, e in zip(marks, ends, strict=True))
    return instruction[: marks[0].start()].strip() if marks else instruction.strip(), options


# Readers ----------------------------------------------------------------------------


def _json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from None


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n} is not valid JSON: {e}") from None
            absent = [k for k in required if k not in row]
            if absent:
                raise DatasetError(
                    f"{path}:{n} lacks {', '.join(absent)}; each line needs {', '.join(required)}"
                )
            yield row
