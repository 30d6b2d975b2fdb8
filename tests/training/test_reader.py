"""The reader's training command, run on a few examples with the real base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragmem.config import ReaderConfig
from ragmem.models import resolve
from ragmem.reader_model import base_sha256, read_weights
from ragmem.reading import Reader
from ragmem.training import data
from ragmem.training.reader import main
from tests.test_reading import passage_of

PARAGRAPHS = [
    ("Tea", "Lu Yu wrote the Classic of Tea in the eighth century. He was later called the "
            "Sage of Tea. The book has three volumes and ten chapters."),
    ("Tea", "Tea was first drunk as a medicine. Later it became a daily drink in China."),
    ("Silk", "The Silk Road started in Chang'an and reached Rome. Camels carried most of "
             "the goods. Zhang Qian travelled west twice."),
    ("Silk", "Merchants traded silk, spices and glass along the road for many centuries."),
    ("Held", "This article holds the held-out question. Its answer is Paris."),
]
QUESTIONS = [
    (0, "Who wrote the Classic of Tea?", "Lu Yu"),
    (0, "How many volumes does the book have?", "three"),
    (2, "What animal carried most of the goods?", "Camels"),
    (2, "Where did the Silk Road start?", "Chang'an"),
]


def squad_file(path: Path) -> Path:
    articles: dict[str, list] = {}
    for i, (title, context) in enumerate(PARAGRAPHS):
        qas = [{"id": f"q{i}-{k}", "question": q,
                "answers": [{"text": a, "answer_start": context.index(a)}]}
               for k, (p, q, a) in enumerate(QUESTIONS) if p == i]
        if title == "Held":
            qas = [{"id": "held", "question": "What is the answer?",
                    "answers": [{"text": "Paris", "answer_start": context.index("Paris")}]}]
        articles.setdefault(title, []).append({"context": context, "qas": qas})
    ordered = ["Held", "Tea", "Silk"]  # the held-out article comes first, as in SQuAD
    path.write_text(json.dumps({"version": "1.1", "data": [
        {"title": t, "paragraphs": articles[t]} for t in ordered]}), encoding="utf-8")
    return path


@pytest.mark.slow  # embeds the questions and paragraphs with the packaged MiniLM
def test_the_split_keeps_the_first_questions_articles_out_of_training(tmp_path: Path) -> None:
    squad = data.load(squad_file(tmp_path / "squad.json"), test_questions=1)
    assert [squad.titles[a] for a in squad.test_articles] == ["Held"]
    assert {squad.titles[a] for a in data.folds(squad, k=2)} == {"Tea", "Silk"}
    train = data.train_examples(squad, set(data.folds(squad)), None, 0)
    assert len(train) == 4 and all(e.question != "What is the answer?" for e in train)
    vectors = data.embed([e.question for e in train],
                         [p for a, p in squad.paragraphs if a in data.folds(squad)])
    negs = data.negatives(squad, train, set(data.folds(squad)), 2, vectors)
    for e, n in zip(train, negs, strict=True):
        assert n and all(x.answer_start is None and e.answer not in x.context for x in n)


@pytest.mark.slow
def test_a_tiny_reader_retrains_with_the_shipped_command(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """The same command that made the shipped weights, on four questions: its file
    carries the schema, loads as a reader and has learnt its training answers."""
    out = tmp_path / "reader.safetensors"
    main(["train", "--squad", str(squad_file(tmp_path / "squad.json")), "--held-out", "1",
          "--epochs", "30", "--batch", "4", "--lr", "0.0003", "--out", str(out),
          "--threshold-questions", "4", "--seed", "1"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["questions"] == 4 and report["bytes"] == out.stat().st_size
    schema, tensors = read_weights(out)
    assert schema.base_sha256 == base_sha256(resolve(ReaderConfig.base_model, "embedder").path)
    assert "--held-out 1" in schema.trained and "qa.weight" in tensors
    reader = Reader(ReaderConfig(weights=str(out)))
    text = PARAGRAPHS[0][1]
    spans = reader.read("Who wrote the Classic of Tea?", [passage_of("t", text, 0, len(text))])
    assert spans[0].text == "Lu Yu"
    # The second stage: shared normalisation over each question and a negative,
    # starting from the first stage's weights, as the shipped recipe does.
    shared = tmp_path / "reader-shared.safetensors"
    main(["train", "--squad", str(squad_file(tmp_path / "squad.json")), "--held-out", "1",
          "--epochs", "5", "--batch", "4", "--lr", "0.0001", "--out", str(shared),
          "--threshold-questions", "4", "--seed", "1", "--shared", "--negatives", "1",
          "--init", str(out)])
    schema = read_weights(shared)[0]
    assert schema.ranking == "shared" and "init sha256" in schema.trained
    spans = Reader(ReaderConfig(weights=str(shared))).read(
        "Who wrote the Classic of Tea?", [passage_of("t", text, 0, len(text))])
    assert spans[0].text == "Lu Yu" and spans[0].score > spans[-1].score
