"""Chat: follow-ups condensed for retrieval, earlier turns within their share of the budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmem import Assistant, Chat
from ragmem.cli import cli
from ragmem.config import Config, RetrievalConfig, WorkingMemoryConfig
from ragmem.conversation import (
    Turn,
    condense,
    first_sentence,
    fit_history,
    is_follow_up,
)
from ragmem.errors import RagmemError
from ragmem.types import Answer, Document
from ragmem.working_memory import WorkingMemory
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder
from tests.test_working_memory import passage

PEOPLE = {
    "armstrong.txt": "Neil Armstrong was an American astronaut. He died in 2012 in Cincinnati.",
    "curie.txt": "Marie Curie was a physicist and chemist. She died in 1934 in France.",
}


def turn(question: str, answer: str, query: str | None = None) -> Turn:
    return Turn(question, query or question, Answer(question, answer, (), (), ""))


def chat_assistant(tmp_path: Path, config: Config = ECHO) -> Assistant:
    a = Assistant.create(tmp_path / "people", config, embedder=KeywordEmbedder(),
                         generator=EchoGenerator())
    a.add_documents(Document(name, name, text) for name, text in PEOPLE.items())
    return a


# -- condense: the retrieval query of a follow-up -------------------------------------

def test_condense_appends_the_last_turns_key_terms() -> None:
    turns = [turn("Who walked on the Moon in 1969?",
                  "Neil Armstrong walked on the Moon in 1969 [1].")]
    assert condense("And when did he die?", turns) == (
        "And when did he die? walked Moon 1969 Neil Armstrong")


def test_condense_leaves_self_contained_questions_and_first_turns_alone() -> None:
    turns = [turn("Who was Marie Curie?", "A physicist [1].")]
    assert condense("Where was Neil Armstrong born in Ohio?", turns) == (
        "Where was Neil Armstrong born in Ohio?")
    assert condense("And when did he die?", []) == "And when did he die?"
    assert is_follow_up("What about Mars?") and is_follow_up("Why?")
    assert is_follow_up("Was that before the war in Europe?")
    assert not is_follow_up("When did Marie Curie win the Nobel prize?")


def test_condensed_context_carries_over_a_chain_and_is_capped() -> None:
    first = turn("Who discovered polonium?", "Marie Curie discovered it [1].")
    second = turn("When was that?", "In 1898 [1].", query=condense("When was that?", [first]))
    query = condense("And where?", [first, second])
    assert "polonium" in query and "Curie" in query and "1898" in query
    long = turn(" ".join(f"Word{i}" for i in range(40)) + "?", "Yes.")
    assert len(condense("Why?", [long]).split()) == 1 + RetrievalConfig().condense_terms
    assert len(condense("Why?", [long], max_terms=3).split()) == 1 + 3


# -- fit_history: newest first, compressed before evicted, oldest out first ----------

def test_fit_history_compresses_then_evicts_the_oldest() -> None:
    count = EchoGenerator().count_tokens
    turns = [turn(f"Question {i}?", f"Answer {i} starts here. " + "More detail. " * 10)
             for i in range(1, 5)]
    block, notes = fit_history(turns, count, 10_000)
    assert notes == () and block.count("More detail.") == 40

    full = count(fit_history(turns[-1:], count, 10_000)[0])
    block, notes = fit_history(turns, count, full + 12)  # room for one compressed turn more
    assert block.splitlines() == ["Conversation so far:", "Q: Question 3?",
                                  "A: Answer 3 starts here.", "Q: Question 4?",
                                  "A: Answer 4 starts here. " + "More detail. " * 9
                                  + "More detail."]
    assert notes == ("history: turns 1-2 left out, over the "
                     f"{full + 12}-token history share",
                     f"history: turn 3 cut to its answer's first sentence to fit the "
                     f"{full + 12}-token history share")
    assert fit_history(turns, count, 3) == (
        "", ("history: turns 1-4 left out, over the 3-token history share",))


def test_turns_render_without_citation_markers() -> None:
    t = turn("Who?\nHim.", "Neil Armstrong [1]. He flew [2] twice.")
    assert t.render() == "Q: Who? Him.\nA: Neil Armstrong. He flew twice."
    assert t.render(compressed=True) == "Q: Who? Him.\nA: Neil Armstrong."
    assert first_sentence("It was 1969. He was 38.") == "It was 1969."


@settings(max_examples=60, deadline=None)
@given(
    turn_sizes=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 4), st.integers(1, 30)),
                        max_size=8),
    sizes=st.lists(st.lists(st.integers(1, 60), min_size=1, max_size=6), max_size=6),
    budget=st.integers(150, 700),
    share=st.floats(0.0, 0.9),
)
def test_history_stays_in_its_share_and_the_prompt_in_budget(
        turn_sizes: list[tuple[int, int, int]], sizes: list[list[int]], budget: int,
        share: float) -> None:
    model = EchoGenerator(context_length=800)
    wm = WorkingMemory(model, WorkingMemoryConfig(token_budget=budget, max_new_tokens=30,
                                                  history_share=share))
    turns = [turn(f"t{i} " + "q " * q + "?", " ".join(f"{'a ' * n}end." for _ in range(k)))
             for i, (q, k, n) in enumerate(turn_sizes)]
    question = "What is the question?"
    history_budget = wm.history_budget(question)
    assert history_budget <= share * wm.token_budget
    block, notes = fit_history(turns, model.count_tokens, history_budget)
    assert model.count_tokens(block) <= history_budget
    passages = [passage(f"d{i}", s, 1.0 - i / 10) for i, s in enumerate(sizes)]
    buf = wm.fill(question, passages, block)
    assert model.count_tokens(buf.prompt) == buf.tokens_used <= buf.token_budget
    # The kept turns are the newest ones, with no gap; the rest are reported.
    asked = [line for line in block.splitlines() if line.startswith("Q: ")]
    newest = [f"Q: {t.question.strip()}" for t in turns[len(turns) - len(asked):]]
    assert asked == newest
    assert (len(asked) < len(turns)) == any("left out" in n for n in notes)
    # Evidence never starves: it may use everything the history share does not.
    evidence_room = buf.token_budget - wm._count(question, [], block)
    assert evidence_room >= wm.token_budget - wm._count(question, []) - history_budget


def test_fill_refuses_history_over_its_share() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=200, max_new_tokens=10,
                                                            history_share=0.1))
    with pytest.raises(RagmemError, match="history"):
        wm.fill("q?", [], "Conversation so far:\n" + "word " * 40)


# -- Chat over a real index with fakes -------------------------------------------------

def test_follow_up_finds_the_person_of_the_previous_turn(tmp_path: Path) -> None:
    chat = Chat(chat_assistant(tmp_path))
    first = chat.ask("Who was Neil Armstrong?")
    assert first.citations[0].doc_id == "armstrong.txt"
    second = chat.ask("And when did he die?")
    assert chat.turns[1].query == "And when did he die? Neil Armstrong American"
    assert second.question == "And when did he die?"
    assert second.text == "He died in 2012 in Cincinnati. [1]"
    assert second.citations[0].doc_id == "armstrong.txt"
    assert second.citations[0].quote == "He died in 2012 in Cincinnati."
    assert ("Conversation so far:\nQ: Who was Neil Armstrong?\n"
            "A: Neil Armstrong was an American astronaut.\n\nPassages:\n[1]") in second.prompt
    assert [t.answer for t in chat.turns] == [first, second]


def test_stream_keeps_the_turn_and_reset_forgets(tmp_path: Path) -> None:
    chat = Chat(chat_assistant(tmp_path))
    pieces = list(chat.stream("Who was Marie Curie?"))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and "".join(map(str, pieces[:-1])).strip() == answer.text
    assert chat.turns[0].answer is answer
    chat.reset()
    assert chat.turns == ()
    assert "Conversation so far" not in chat.ask("Who was Neil Armstrong?").prompt


def test_a_long_conversation_is_cut_to_its_share(tmp_path: Path) -> None:
    config = replace(ECHO, working_memory=WorkingMemoryConfig(token_budget=160,
                                                             max_new_tokens=20))
    chat = Chat(chat_assistant(tmp_path, config), top_k=2)
    for _ in range(6):
        answer = chat.ask("Who was Marie Curie and what did she study at university?")
    assert any("left out" in d for d in answer.dropped)
    assert answer.tokens_used <= answer.token_budget == 140
    history = answer.prompt.split("\n\nPassages:")[0].split("Conversation so far:")[1]
    assert EchoGenerator().count_tokens("Conversation so far:" + history) <= 140 * 0.25
    assert answer.passages  # the evidence kept its share


def test_unknown_rewrite_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(RagmemError, match="use heuristic or generator"):
        Chat(chat_assistant(tmp_path), rewrite="llm")


def test_generator_rewrite_uses_the_generators_line(tmp_path: Path) -> None:
    class Rewriter(EchoGenerator):
        def generate(self, prompt: str, max_new_tokens: int) -> str:
            if prompt.startswith("Rewrite the follow-up"):
                return "When did Neil Armstrong die?\nextra"
            return super().generate(prompt, max_new_tokens)

    a = chat_assistant(tmp_path)
    a._generator = Rewriter()
    chat = Chat(a, rewrite="generator")
    chat.ask("Who was Neil Armstrong?")
    chat.ask("And when did he die?")
    assert chat.turns[1].query == "When did Neil Armstrong die?"


# -- ragmem chat, in-process ---------------------------------------------------------

@pytest.fixture
def people_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo_mode: None) -> str:
    """An index named "people" under RAGMEM_HOME; Assistant.open gets the fakes injected."""
    Assistant.create("people", embedder=KeywordEmbedder()).add_documents(
        Document(name, name, text) for name, text in PEOPLE.items())
    real_open = Assistant.open

    def open_with_fakes(cls: type[Assistant], index: str, config: Config | None = None,
                        **_: object) -> Assistant:
        config = replace(config or Config(), retrieval=replace(
            (config or Config()).retrieval, top_k=2))
        return real_open(index, config, embedder=KeywordEmbedder(), generator=EchoGenerator())

    monkeypatch.setattr(Assistant, "open", classmethod(open_with_fakes))
    return "people"


def test_cli_chat_session(people_index: str) -> None:
    lines = ["Who was Neil Armstrong?", "And when did he die?", "/sources", "/bogus",
             "/reset", "/sources", "/quit", "never read"]
    result = CliRunner().invoke(cli, ["chat", people_index], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Neil Armstrong was an American astronaut. [1]" in out
    assert "He died in 2012 in Cincinnati. [1]" in out
    assert ('[1] armstrong.txt (armstrong.txt, chars 42-72): '
            '"He died in 2012 in Cincinnati."') in out
    assert "[1] armstrong.txt 0-72 score" in out  # /sources: the last answer's passages
    assert "unknown command /bogus; use /sources" in out
    assert "(conversation forgotten)" in out and "no answer yet" in out
    assert "never read" not in out


def test_cli_chat_ends_cleanly_at_end_of_input(people_index: str) -> None:
    result = CliRunner().invoke(cli, ["chat", people_index], input="Who was Marie Curie?\n")
    assert result.exit_code == 0, result.output
    assert "Marie Curie was a physicist and chemist. [1]" in result.output


def test_cli_chat_help_has_examples() -> None:
    result = CliRunner().invoke(cli, ["chat", "--help"])
    assert result.exit_code == 0 and "ragmem chat demo" in result.output
    assert "/sources" in result.output
