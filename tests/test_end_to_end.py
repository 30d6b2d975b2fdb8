"""The real path, end to end: packaged MiniLM + packaged SmolLM2 on the bundled demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragmem import Assistant
from ragmem.answering import ExtractAnswerer, GenerateAnswerer
from ragmem.config import ReaderConfig
from ragmem.reading import Reader

pytestmark = pytest.mark.slow  # real models on the demo corpus

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


def test_generate_mode_quotes_its_citations_exactly(demo_assistant: Assistant) -> None:
    q = sample_questions()[0]
    question = str(q["question"])
    buffer = demo_assistant.working_memory.fill(question,
                                                demo_assistant.retriever.passages(question))
    answer = GenerateAnswerer(demo_assistant.generator, max_new_tokens=24).answer(buffer)
    assert answer.mode == "generate" and answer.text
    located = (*answer.citations, *answer.suggestions)  # [n] it wrote, or a suggestion
    assert located, answer.text  # an answer always says where it stands, or where to look
    for c in located:
        source = Path(c.path).read_text(encoding="utf-8")
        assert source[c.start:c.end] == c.quote
    evidence = " ".join(str(q["evidence"]).split())
    passages = " ".join(" ".join(p.text.split()) for p in answer.passages)
    assert evidence in passages  # the answer's sentence made it into the working memory
    assert answer.tokens_used <= answer.token_budget
    # What a 135M generator says is measured in eval/bench/answer_modes.py, not here.


# -- the default answer: a verbatim span of the file, or an honest "not found" ----------


def test_extract_answers_are_exact_spans_of_the_files(demo_assistant: Assistant) -> None:
    """Every demo answer is a piece of its file at the offsets it cites; one that
    abstains cites nothing and points to evidence as a suggestion only."""
    for q in sample_questions():
        answer = demo_assistant.ask(str(q["question"]))
        assert answer.mode == "extract"
        assert answer.abstained == (answer.citations == ())
        for c in (*answer.citations, *answer.suggestions):
            assert Path(c.path).read_text(encoding="utf-8")[c.start:c.end] == c.quote
    # The default reader abstains on all 11 demo questions (eval/reports/reader/), so the
    # exact-span check must also run on real answers: the same reader, never abstaining.
    eager = ExtractAnswerer(Reader(ReaderConfig(abstain_below=0.0)))
    for q in sample_questions():
        answer = eager.answer(demo_assistant.pipeline.fill(str(q["question"])).buffer)
        assert not answer.abstained, q["question"]
        (cite,) = answer.citations
        source = Path(cite.path).read_text(encoding="utf-8")
        assert source[cite.start:cite.end] == cite.quote == answer.text, q["question"]
        if answer.text in q["answers"]:  # a gold answer, cited in its own story
            assert cite.doc_id == q["doc_id"], q["question"]
    bank = demo_assistant.ask(str(sample_questions()[0]["question"]))
    (where,) = bank.suggestions if bank.abstained else bank.citations
    assert where.doc_id == "doyle-the-red-headed-league.txt"


def test_a_question_the_documents_cannot_answer_gets_not_found(
        demo_assistant: Assistant) -> None:
    answer = demo_assistant.ask("What is the boiling point of liquid nitrogen in kelvin?")
    assert answer.abstained and answer.citations == ()
    assert answer.text == "Not found in the indexed documents."
    assert answer.suggestions  # where the closest evidence is, offered as a suggestion


ZH = {
    "chang-an.txt": ("长安城是唐朝的都城。长安城的人口超过一百万。城中有东市和西市两个大市场。"
                     "朱雀大街是长安城最宽的街道，宽约一百五十米。"),
    "tea.txt": ("陆羽写了《茶经》。他被后人称为茶圣。《茶经》共有三卷十章。"
                "书中记载了茶的种植、采摘和煮茶的方法。"),
    "silk.txt": ("丝绸之路从长安出发，向西到达罗马。张骞两次出使西域。"
                 "骆驼是商队最重要的交通工具。"),
}


def test_chinese_question_over_chinese_documents(tmp_path: Path) -> None:
    """Lexical (jieba words and character bigrams) and dense retrieval both find the
    document, and the answer is a Chinese span of it at exact offsets."""
    corpus = tmp_path / "zh"
    corpus.mkdir()
    for name, text in ZH.items():
        (corpus / name).write_text(text, encoding="utf-8")
    assistant = Assistant.create(tmp_path / "zh-index")
    assert assistant.index([corpus]).failed == ()
    question = "谁写了《茶经》？"
    lexical = assistant.memory.lexical_search(question, 3)
    dense = assistant.memory.search(assistant.embedder.embed([question]), 3)[0]
    assert lexical[0].doc_id == "tea.txt"
    assert "tea.txt" in [h.doc_id for h in dense]
    answer = assistant.ask(question)
    assert not answer.abstained, answer
    (cite,) = answer.citations
    assert cite.doc_id == "tea.txt"
    assert ZH["tea.txt"][cite.start:cite.end] == answer.text
    assert "陆羽" in answer.text


ZH_MEMORY = Path(__file__).parent / "fixtures" / "zh_memory"
# The issue's three questions over our own articles in their style (issue 26): what a
# Chinese reader would accept is inside the answer, and no answer cuts a word.
ZH_QUESTIONS = {
    "什么是工作记忆？": "容量有限的记忆系统",
    "大语言模型的工作记忆有什么局限性？": "上下文窗口长度的限制",
    "长期记忆通常用什么来实现？": "向量数据库",
}


def test_the_issues_chinese_questions_with_the_packaged_models(tmp_path: Path) -> None:
    from ragmem.chinese import cuts_word

    assistant = Assistant.create(tmp_path / "zh-memory")
    assert assistant.index([ZH_MEMORY]).failed == ()
    for question, accepted in ZH_QUESTIONS.items():
        answer = assistant.ask(question)
        assert not answer.abstained, (question, answer.text)
        (cite,) = answer.citations
        text = (ZH_MEMORY / cite.doc_id).read_text(encoding="utf-8")
        assert text[cite.start:cite.end] == answer.text
        assert accepted in answer.text and answer.text != "9.1", (question, answer.text)
        assert not cuts_word(text, cite.start, cite.end), (question, answer.text)
