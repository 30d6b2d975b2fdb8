from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragmem.config import WorkingMemoryConfig
from ragmem.types import Passage, Sentence
from ragmem.working_memory import WorkingMemory, suggestion
from tests.conftest import EchoGenerator


def passage(doc_id: str, lengths: list[int], score: float) -> Passage:
    sentences, pos = [], 0
    for i, n in enumerate(lengths):
        text = " ".join(f"w{i}x{j}" for j in range(n)) + "."
        sentences.append(Sentence(doc_id, i, pos, pos + len(text), text))
        pos += len(text) + 1
    return Passage(doc_id, f"/{doc_id}", 0, pos - 1, score, tuple(sentences))


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(1, 120), min_size=1, max_size=8), max_size=8),
    budget=st.integers(120, 700),
    max_new=st.integers(1, 60),
)
def test_prompt_never_exceeds_budget(sizes: list[list[int]], budget: int, max_new: int) -> None:
    model = EchoGenerator(context_length=600)
    wm = WorkingMemory(model, WorkingMemoryConfig(token_budget=budget, max_new_tokens=max_new))
    passages = [passage(f"d{i}", s, 1.0 - i / 10) for i, s in enumerate(sizes)]
    buf = wm.fill("What is the question?", passages)
    assert buf.token_budget == min(600, budget) - max_new
    assert model.count_tokens(buf.prompt) == buf.tokens_used <= buf.token_budget
    for kept in buf.passages:  # whole sentences only, in document order
        original = next(p for p in passages if p.doc_id == kept.doc_id)
        texts = [s.text for s in original.sentences]
        first = texts.index(kept.sentences[0].text)
        assert [s.text for s in kept.sentences] == texts[first:first + len(kept.sentences)]
    # Everything that was left out or cut is reported.
    cut = sum(len(p.sentences) for p in passages) - sum(len(p.sentences) for p in buf.passages)
    assert (cut > 0) == bool(buf.dropped)


def test_best_passages_come_first_and_are_numbered() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400, max_new_tokens=20))
    buf = wm.fill("q?", [passage("best", [3], 0.9), passage("next", [3], 0.5)])
    assert "[1] w0x0" in buf.prompt and buf.prompt.index("[1]") < buf.prompt.index("[2]")
    assert [p.doc_id for p in buf.passages] == ["best", "next"]


def test_oversized_passage_is_trimmed_from_its_ends() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=150, max_new_tokens=10))
    buf = wm.fill("q?", [passage("long", [30, 30, 30, 30, 30], 0.9)])
    kept = [s.index for s in buf.passages[0].sentences]
    assert kept == sorted(kept) and 0 < len(kept) < 5 and 4 not in kept
    assert "trimmed" in buf.dropped[0]


def test_citations_follow_markers_and_an_unmarked_answer_gets_only_a_suggestion() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400, max_new_tokens=20))
    p1 = Passage("a", "/a", 0, 30, 0.9, (Sentence("a", 0, 0, 14, "Cats are cute."),
                                         Sentence("a", 1, 15, 30, "Dogs bark loud.")))
    p2 = Passage("b", "/b", 0, 12, 0.5, (Sentence("b", 0, 0, 12, "Fish swim."),))
    buf = wm.fill("q?", [p1, p2])
    cited = buf.citations_in("Dogs bark [1], fish swim [2] [7].")
    assert [(c.number, c.doc_id, c.quote) for c in cited] == [
        (1, "a", "Dogs bark loud."), (2, "b", "Fish swim.")]
    # No [n]: nothing says the answer rests on a passage, so no citation; the sentence
    # sharing most words is offered apart, as a place to look.
    assert buf.citations_in("They swim, the fish.") == ()
    hint = suggestion("They swim, the fish.", buf.passages)
    assert hint is not None and (hint.doc_id, hint.start, hint.end) == ("b", 0, 12)
    assert suggestion("", buf.passages) is None


def test_edges_order_puts_best_first_and_second_last() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=500, max_new_tokens=10,
                                                            order="edges"))
    passages = [passage(f"p{i}", [2], 1 - i / 10) for i in range(5)]
    buf = wm.fill("q?", passages)
    assert [p.doc_id for p in buf.passages] == ["p0", "p2", "p4", "p3", "p1"]
    assert buf.prompt.index("[1] w0x0") < buf.prompt.index("[5] w0x0")
