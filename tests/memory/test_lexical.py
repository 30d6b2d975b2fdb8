from __future__ import annotations

from pathlib import Path

import numpy as np

from ragmem.memory import LongTermMemory
from ragmem.memory.check import check
from ragmem.memory.lexical import (
    cjk_bigrams,
    fts_query,
    lexical_form,
    most_informative,
    query_terms,
)
from ragmem.retrieval import fuse
from ragmem.types import Document, Filter, Hit, Sentence, Window
from tests.memory.test_check import StoredEmbedder


def add_text(memory: LongTermMemory, doc_id: str, sentences: list[str],
             meta: dict[str, str] | None = None) -> None:
    text = " ".join(sentences)
    sents, pos = [], 0
    for i, s in enumerate(sentences):
        sents.append(Sentence(doc_id, i, pos, pos + len(s), s))
        pos += len(s) + 1
    windows = [Window(doc_id, i, i, i, s.start, s.end, s.text, 3) for i, s in enumerate(sents)]
    vecs = np.ones((len(windows), 4), dtype=np.float32) / 2
    doc = Document(doc_id, f"/{doc_id}", text, content_hash=str(hash(text)), metadata=meta or {})
    with memory.writer() as w:
        w.add(doc, sents, windows, vecs)


def test_bm25_finds_stemmed_keywords_and_chinese(tmp_path: Path) -> None:
    m = LongTermMemory.create(tmp_path / "i", embedder="t", dim=4, chunking={})
    add_text(m, "en", ["The volcanoes of Mars are tall.", "Cats sleep all day long."])
    add_text(m, "zh", ["北京大学位于北京市海淀区。", "上海是一个港口城市。"])
    assert [h.text for h in m.lexical_search("which volcano is tallest", 1)] == [
        "The volcanoes of Mars are tall."]
    assert m.lexical_search("北京大学在哪里", 1)[0].text == "北京大学位于北京市海淀区。"
    assert m.lexical_search("港口", 5)[0].doc_id == "zh"
    # A question of stopwords alone still searches (with them) rather than failing.
    assert m.lexical_search("the of", 5)[0].text == "The volcanoes of Mars are tall."
    assert m.lexical_search("cats", 5, where=Filter(doc_ids=("zh",))) == []


def test_lexical_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    m = LongTermMemory.create(tmp_path / "i", embedder="t", dim=4, chunking={})
    add_text(m, "a", ["Quantum entanglement is spooky."])
    add_text(m, "a", ["Classical mechanics is not."])  # same id: replaces the document
    assert m.lexical_search("entanglement", 5) == []
    assert m.lexical_search("mechanics", 5)[0].doc_id == "a"
    with m.writer() as w:
        w.remove("a")
    assert m.lexical_search("mechanics", 5) == []
    assert check(tmp_path / "i", StoredEmbedder("t", 4)).ok


def test_query_building_quotes_terms() -> None:
    # FTS5 operators and quotes in a question are plain words here, never syntax.
    assert fts_query('AND OR NOT "x" NEAR(y)') == '"not" OR "x" OR "near" OR "y"'
    assert fts_query("???") is None
    assert lexical_form("中") == " 中 "


def hit(wid: int) -> Hit:
    return Hit(wid, "d", 0.0, 0, 0, 0, 1, "x")


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = fuse([[hit(1), hit(2), hit(3)], [hit(3), hit(4)]], [1.0, 1.0], k=60)
    # 3: 1/63 + 1/61 beats 1: 1/61; 2: 1/62 beats 4: 1/62 by first appearance.
    assert [h.window_id for h in fused] == [3, 1, 2, 4]
    assert abs(fused[0].score - (1 / 63 + 1 / 61)) < 1e-12
    weighted = fuse([[hit(1)], [hit(2)]], [1.0, 2.0])
    assert [h.window_id for h in weighted] == [2, 1]


def test_most_informative_keeps_the_rarest_terms_in_question_order() -> None:
    counts = {"cell": 900, "p53": 4, "tumour": 120, "growth": 120}
    assert most_informative(["cell", "p53", "tumour", "growth"], counts, 2) == ["p53", "tumour"]
    assert most_informative(["cell", "p53"], counts, 5) == ["cell", "p53"]  # under the cap
    # Terms no window holds match nothing: they go first, never crowding out real ones.
    assert most_informative(["zzz", "cell", "qqq", "p53"], counts, 2) == ["cell", "p53"]


def test_windows_with_terms_counts_stemmed_terms(tmp_path: Path) -> None:
    m = LongTermMemory.create(tmp_path / "i", embedder="t", dim=4, chunking={})
    add_text(m, "a", ["The volcanoes of Mars are tall.", "Volcano talk.", "Cats sleep."])
    counts = m.docstore.windows_with_terms(["volcano", "volcanoes", "cats", "mars", "zebra"])
    assert counts == {"volcano": 2, "volcanoes": 2, "cats": 1, "mars": 1, "zebra": 0}


def test_a_long_question_is_searched_by_its_rarest_terms(tmp_path: Path) -> None:
    m = LongTermMemory.create(tmp_path / "i", embedder="t", dim=4, chunking={})
    common = "protein expression cell study"
    add_text(m, "a", [f"{common} number {i}." for i in range(30)]
             + ["Olympus Mons is a shield volcano on Mars."])
    question = f"{common} {common} which shield volcano stands on Mars"
    top = m.lexical_search(question, 1, max_terms=3)[0]
    assert top.text == "Olympus Mons is a shield volcano on Mars."
    assert len(query_terms(question)) == 8  # "which" is a stopword
    with m.docstore.conn:  # the statistics live in the temp schema only
        names = {r[0] for r in m.docstore.conn.execute("SELECT name FROM sqlite_master")}
    assert not any("vocab" in n or "query_" in n for n in names)


def test_chinese_is_indexed_as_jieba_words_and_character_bigrams() -> None:
    form = lexical_form("长短期记忆通过模型参数实现")
    assert {"长短期", "记忆", "模型", "参数"} <= set(form.split())  # jieba's words
    assert {"短期", "型参"} <= set(form.split())  # and every bigram, as before
    assert cjk_bigrams("长短期") == " 长短 短期 "
    # Latin text is left as it was: an English index is unchanged
    assert lexical_form("Working memory in LLMs, 2024.") == "Working memory in LLMs, 2024."
