"""Chinese questions: spans of whole jieba words, placed by the question's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragmem import Assistant
from ragmem.chinese import cuts_word
from ragmem.chinese_answers import RESCORED, ChineseSpans, asked, features, rescore_features, score
from ragmem.config import AnsweringConfig, Config
from ragmem.extraction import answerable_spans
from ragmem.span_ranking import SpanRanker
from ragmem.types import Passage, Sentence
from tests.conftest import WordCountScorer

ZH_CORPUS = Path(__file__).parent / "fixtures" / "zh_memory"
# The issue's three questions, with what a Chinese reader would accept of our fixture.
QUESTIONS = {
    "什么是工作记忆？": "容量有限的记忆系统",
    "大语言模型的工作记忆有什么局限性？": "上下文窗口长度的限制",
    "长期记忆通常用什么来实现？": "向量数据库",
}


def passage(texts: list[str], doc_id: str = "d") -> Passage:
    sentences, start = [], 0
    for i, text in enumerate(texts):
        sentences.append(Sentence(doc_id, i, start, start + len(text), text))
        start += len(text) + 1
    return Passage(doc_id, f"{doc_id}.md", 0, start - 1, 1.0, tuple(sentences))


def test_the_question_is_split_at_its_question_word() -> None:
    a = asked("《战国无双3》是由哪两个公司合作开发的？")
    assert (a.before, a.cue, a.after, a.kind) == \
        ("战国无双3是由", "哪", "两个公司合作开发", "which")
    assert asked("长城有多长？").kind == "number" and asked("他为什么走了？").kind == "why"
    assert asked("说说长城。").kind == "other"


def test_no_chinese_span_cuts_a_word() -> None:
    text = "在大语言模型中，长短期记忆通过模型参数实现，用于存储和更新历史信息。"
    spans = answerable_spans("长期记忆通常用什么来实现？", text, 20)
    assert spans and not any(cuts_word(text, a, b) for a, b in spans)
    assert "型参数" not in {text[a:b] for a, b in spans}
    assert "长短" not in {text[a:b] for a, b in spans}
    assert "模型参数" in {text[a:b] for a, b in spans}


def test_a_heading_number_or_question_is_never_an_answer() -> None:
    assert answerable_spans("什么是工作记忆？", "### 9.1 什么是工作记忆？", 20) == []
    heading = "9.1 工作记忆的局限性"
    found = {heading[a:b] for a, b in answerable_spans("什么是工作记忆？", heading, 20)}
    assert "9.1" not in found and "局限性" in found
    # an English question keeps every span, numbers included
    assert "9.1" in {"9.1 Limits"[a:b] for a, b in answerable_spans("Which?", "9.1 Limits", 8)}


def test_the_span_between_the_questions_words_wins() -> None:
    p = passage(["《战国无双3》是由光荣和ω-force合作开发的一款游戏。", "游戏于2010年发售。"])
    best = ChineseSpans().read("《战国无双3》是由谁合作开发的？", [p])[0]
    assert best.text == "光荣和ω-force"
    assert p.sentences[0].text[best.start:best.end] == best.text
    when = ChineseSpans().read("游戏于哪一年发售？", [p])[0]
    assert when.text == "2010年"


def test_a_kind_answered_whole_on_cmrc_gets_its_clause() -> None:
    # "which" questions scored higher F1 on CMRC trial with the span's whole clause
    p = passage(["《战国无双3》是由光荣和ω-force合作开发的，于2010年发售。"])
    best = ChineseSpans().read("《战国无双3》是由哪两个公司合作开发的？", [p])[0]
    assert best.text == "《战国无双3》是由光荣和ω-force合作开发的"


def test_what_is_x_is_answered_by_x_is() -> None:
    a = asked("什么是工作记忆？")
    assert (a.before, a.after, a.kind) == ("工作记忆是", "", "what")


@pytest.fixture
def zh_assistant(tmp_path: Path, keyword_embedder, echo_generator) -> Assistant:
    config = Config().with_overrides({"answering": {"mode": "extract"}})
    assistant = Assistant.create(tmp_path / "zh", config, embedder=keyword_embedder,
                                 generator=echo_generator)
    assert assistant.index([ZH_CORPUS]).failed == ()
    return assistant


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_the_issues_questions_get_whole_word_answers(zh_assistant: Assistant,
                                                     question: str) -> None:
    answer = zh_assistant.ask(question)
    assert not answer.abstained, answer.text
    (cite,) = answer.citations
    text = (ZH_CORPUS / cite.doc_id).read_text(encoding="utf-8")
    assert text[cite.start:cite.end] == answer.text
    assert answer.text != "9.1" and QUESTIONS[question] in answer.text
    assert not cuts_word(text, cite.start, cite.end)


class EndingScorer(WordCountScorer):
    def end_of_answer_ids(self) -> list[int]:
        return [0]


def test_the_generator_rescores_the_best_spans_by_the_weights_given() -> None:
    p = passage(["《战国无双3》是由光荣和ω-force合作开发的一款游戏。", "游戏于2010年发售。"])
    question = "《战国无双3》是由谁合作开发的？"
    plain = ChineseSpans()
    ask, found = plain.candidates(question, [p])
    kept = sorted(found, key=lambda c: -score(features(ask, c)))[:RESCORED]
    views = rescore_features(SpanRanker(EndingScorer()), question, kept,
                             [score(features(ask, c)) for c in kept])
    assert max(v["cue"] for v in views) == 0.0 and all("lm_tokens" in v for v in views)
    # the cue weight alone keeps the cues' choice; the generator's alone takes its own
    same = ChineseSpans(scorer=EndingScorer(), rescore={"cue": 1.0}).read(question, [p])
    assert same[0].text == plain.read(question, [p])[0].text == "光荣和ω-force"
    by_lm = ChineseSpans(scorer=EndingScorer(), rescore={"lm_tokens": 1.0}).read(
        question, [p])
    liked = max(zip(views, kept, strict=True), key=lambda vc: vc[0]["lm_tokens"])[1]
    assert by_lm[0].text == liked.text != "光荣和ω-force"


def test_the_rescored_option_gives_the_cues_the_answerers_generator() -> None:
    from ragmem.answering import answerer_for
    from ragmem.config import ReaderConfig

    generator = EndingScorer()
    for option, rescorer in (("cues", None), ("rescored", generator)):
        answerer = answerer_for(AnsweringConfig(mode="extract", chinese=option),  # type: ignore[arg-type]
                                ReaderConfig(), generator)
        finder = answerer.finder("长期记忆通常用什么来实现？")  # type: ignore[attr-defined]
        assert isinstance(finder, ChineseSpans) and finder.scorer is rescorer
