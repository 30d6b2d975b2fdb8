"""SQuAD questions -> the reader's training and test examples, with retrieved negatives.

The split is fixed by the issue that asked for the reader: the first 1,000 questions of
SQuAD v1.1 dev (the articles Super_Bowl_50 and Warsaw, whole) are the test set and are
never trained or tuned on; every other article is training data, cut into article-level
folds for cross-validation.

A negative is a paragraph of a training article that the embedder ranks high for the
question but that does not contain any of its answers: a retrieved window that does not
hold the answer, labelled no-answer, so the reader learns to abstain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEST_QUESTIONS = 1000


@dataclass(frozen=True)
class Example:
    """A question over one context; ``answer_start`` None: the context does not hold it."""

    qid: str
    article: int  # index of the article in the file
    question: str
    context: str
    answer_start: int | None
    answer: str
    answers: tuple[str, ...]  # every gold answer, for scoring


@dataclass(frozen=True)
class Squad:
    examples: tuple[Example, ...]  # one per question, its gold paragraph as context
    paragraphs: tuple[tuple[int, str], ...]  # (article, text) of every paragraph
    titles: tuple[str, ...]
    test_articles: frozenset[int]


def load(path: str | Path, test_questions: int = TEST_QUESTIONS) -> Squad:
    """Every question with its gold paragraph; articles holding any of the first
    ``test_questions`` questions are test articles."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    examples: list[Example] = []
    paragraphs: list[tuple[int, str]] = []
    test: set[int] = set()
    for a, article in enumerate(data):
        for p in article["paragraphs"]:
            paragraphs.append((a, p["context"]))
            for qa in p["qas"]:
                if len(examples) < test_questions:
                    test.add(a)
                first = qa["answers"][0]
                examples.append(Example(
                    qa["id"], a, qa["question"], p["context"], int(first["answer_start"]),
                    first["text"], tuple(x["text"] for x in qa["answers"])))
    return Squad(tuple(examples), tuple(paragraphs), tuple(x["title"] for x in data),
                 frozenset(test))


def folds(squad: Squad, k: int = 5) -> dict[int, int]:
    """Training article -> fold, by the article's place among the training articles."""
    train = sorted({e.article for e in squad.examples} - squad.test_articles)
    return {a: i % k for i, a in enumerate(train)}


def train_examples(squad: Squad, articles: set[int], limit: int | None,
                   seed: int) -> list[Example]:
    """Questions of ``articles``; ``limit`` of them drawn with ``seed`` (file order kept)."""
    pool = [e for e in squad.examples if e.article in articles]
    if limit is not None and limit < len(pool):
        keep = np.random.default_rng(seed).choice(len(pool), limit, replace=False)
        pool = [pool[i] for i in sorted(keep)]
    return pool


def negatives(squad: Squad, examples: Sequence[Example], articles: set[int], per_question: int,
              vectors: tuple[np.ndarray, np.ndarray] | None = None,
              embed_model: str | None = None) -> list[list[Example]]:
    """For each example, the ``per_question`` paragraphs of ``articles`` the embedder
    ranks highest that contain none of its answers, as no-answer examples."""
    pool = [i for i, (a, _) in enumerate(squad.paragraphs) if a in articles]
    if per_question <= 0 or not pool:
        return [[] for _ in examples]
    q, p = vectors if vectors is not None else embed(
        [e.question for e in examples], [squad.paragraphs[i][1] for i in pool], embed_model)
    out = []
    for e, row in zip(examples, q @ p.T, strict=True):
        chosen: list[Example] = []
        for j in np.argsort(-row):
            text = squad.paragraphs[pool[j]][1]
            if text == e.context or any(a.lower() in text.lower() for a in e.answers):
                continue
            chosen.append(Example(e.qid, squad.paragraphs[pool[j]][0], e.question, text,
                                  None, "", e.answers))
            if len(chosen) == per_question:
                break
        out.append(chosen)
    return out


def embed(questions: Sequence[str], paragraphs: Sequence[str],
          model: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised embeddings of questions and paragraphs by ragmem's embedder, kept in
    a cache file named by their content (plain .npy: the options compared in one
    session embed the same texts)."""
    from ragmem.config import DEFAULT_EMBEDDER

    model = model or DEFAULT_EMBEDDER
    return _embed_cached(list(questions), model), _embed_cached(list(paragraphs), model)


def _embed_cached(texts: list[str], model: str) -> np.ndarray:
    from ragmem.config import cache_home
    from ragmem.embedding import SentenceTransformerEmbedder

    key = hashlib.sha256("\x00".join([model, *texts]).encode()).hexdigest()[:24]
    path = cache_home() / "training" / f"embeddings-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    vectors = SentenceTransformerEmbedder(model).embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, vectors, allow_pickle=False)
    tmp.replace(path)
    return vectors


def mix(examples: Sequence[Example], negs: Sequence[Sequence[Example]], ratio: float,
        seed: int) -> list[Example]:
    """The examples plus ``ratio`` negatives per example (drawn with ``seed`` when the
    ratio is not whole), shuffled by nothing: batching orders them."""
    rng = np.random.default_rng(seed)
    whole, part = int(ratio), ratio - int(ratio)
    out = list(examples)
    for n in negs:
        take = whole + (1 if part and rng.random() < part else 0)
        out.extend(n[:take])
    return out
