"""The real path, end to end: packaged MiniLM + packaged SmolLM2 on the bundled demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragmem import Assistant

DEMO = Path(__file__).resolve().parents[1] / "ragmem" / "demo"


@pytest.fixture(scope="module")
def demo_assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    assistant = Assistant.create(tmp_path_factory.mktemp("e2e") / "demo")
    stats = assistant.index([DEMO / "corpus"])
    assert stats.failed == () and stats.windows > 100
    return assistant


def sample_questions() -> list[dict[str, object]]:
    lines = (DEMO / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_demo_question_retrieves_its_document(demo_assistant: Assistant) -> None:
    for q in sample_questions():
        hits = demo_assistant.retrieve(str(q["question"]), top_k=5)
        assert q["doc_id"] in [h.doc_id for h in hits], q["question"]


def test_sample_question_gets_a_cited_answer(demo_assistant: Assistant) -> None:
    q = sample_questions()[0]
    answer = demo_assistant.ask(str(q["question"]))
    top = answer.citations[0]
    assert top.doc_id == q["doc_id"]
    source = Path(top.path).read_text(encoding="utf-8")
    assert source[top.start:top.end] == top.quote
    evidence = " ".join(str(q["evidence"]).split())
    passages = " ".join(" ".join(p.text.split()) for p in answer.passages)
    assert evidence in passages  # the answer's sentence made it into the working memory
    assert answer.text and answer.tokens_used <= answer.token_budget
    # What a 135M generator says is measured in eval/bench_demo.py, not asserted here.
