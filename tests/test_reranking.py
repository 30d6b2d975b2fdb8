"""The cross-encoder reranker, with a tiny BERT cross-encoder built here (no download)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragmem import Assistant
from ragmem.cli import cli
from ragmem.config import Config, RetrievalConfig
from ragmem.errors import ModelError
from ragmem.reranking import CrossEncoderReranker, rerank
from ragmem.types import Hit
from tests.conftest import CORPUS, ECHO, EchoGenerator, KeywordEmbedder

SENTENCES = [s for text in CORPUS.values() for s in text.replace("\n", " ").split(". ")]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with one output and a WordPiece vocabulary made here.

    The vocabulary is listed, not trained: tokenizers' WordPieceTrainer breaks ties in
    hash-map order, so each run got another vocabulary, other scores and, once in a
    while, two candidates a float32 rounding apart, whose order then depended on the
    batch size (the flaky failure of test_reranked_order_is_the_models_own_order).
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for s in SENTENCES
                    for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(s))})
    letters = sorted({c for w in words for c in w})
    vocab = list(dict.fromkeys([*specials, *letters, *(f"##{c}" for c in letters), *words]))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    # A wide initialisation spreads the untrained scores, so no two candidates tie.
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        num_labels=1, initializer_range=0.5)
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def predict(path: Path, question: str, texts: list[str], batch_size: int = 32) -> list[float]:
    """The oracle: the model's own scores, through sentence-transformers directly."""
    from sentence_transformers import CrossEncoder

    scores = CrossEncoder(str(path), device="cpu").predict([(question, t) for t in texts],
                                                           batch_size=batch_size,
                                                           show_progress_bar=False)
    return [float(s) for s in scores]


def hit(i: int, text: str) -> Hit:
    return Hit(window_id=i, doc_id=f"d{i}", score=1.0 / (i + 1), first=0, last=0, start=0,
               end=len(text), text=text)


def test_reranked_order_is_the_models_own_order(tiny_cross_encoder: Path) -> None:
    question = "Who walked on the Moon?"
    hits = [hit(i, s) for i, s in enumerate(SENTENCES)]
    reranked = rerank(CrossEncoderReranker(str(tiny_cross_encoder), batch_size=3), question, hits)
    # Same batches as the reranker's: padding to another length moves float32 scores by
    # up to ~1e-6, which is noise, not a difference between the two.
    scores = predict(tiny_cross_encoder, question, [h.text for h in hits], batch_size=3)
    expected = sorted(range(len(hits)), key=lambda i: -scores[i])
    assert [h.window_id for h in reranked] == expected
    assert [h.score for h in reranked] == pytest.approx([scores[i] for i in expected], abs=1e-6)
    # No near-ties: no batch size or thread count could reorder the model's own ranking.
    assert (min(scores[a] - scores[b] for a, b in zip(expected, expected[1:], strict=False))
               > 1e-4)
    unpadded = predict(tiny_cross_encoder, question, [h.text for h in hits], batch_size=1)
    assert unpadded == pytest.approx(scores, abs=1e-5)


def test_retrieval_with_a_reranker_keeps_top_k_of_the_candidates(
        corpus_dir: Path, tmp_path: Path, tiny_cross_encoder: Path) -> None:
    retrieval = RetrievalConfig(top_k=2, rerank_candidates=20, reranker=str(tiny_cross_encoder))
    a = Assistant.create(tmp_path / "idx", replace(ECHO, retrieval=retrieval),
                         embedder=KeywordEmbedder(), generator=EchoGenerator())
    a.index([corpus_dir])
    question = "When did Neil Armstrong walk on the Moon?"
    hits = a.retrieve(question)
    assert len(hits) == 2
    candidates = a.retriever._first_stage(question, a.retriever._query_vector(question), 20,
                                          None)
    assert len(candidates) > 2  # the reranker chose among more than it kept
    scores = predict(tiny_cross_encoder, question, [h.text for h in candidates])
    best = sorted(range(len(candidates)), key=lambda i: -scores[i])[:2]
    assert [h.window_id for h in hits] == [candidates[i].window_id for i in best]
    answer = a.ask(question)
    assert answer.passages and answer.citations


def test_cli_ask_reranks_with_the_given_model(
        corpus_dir: Path, tiny_cross_encoder: Path, monkeypatch: pytest.MonkeyPatch,
        echo_mode: None) -> None:
    plain = Assistant.create("notes", embedder=KeywordEmbedder())
    plain.index([corpus_dir])
    question = "What is the tallest volcano?"
    windows = plain.retriever._first_stage(question, plain.retriever._query_vector(question),
                                           20, None)
    oracle = dict(zip([w.doc_id for w in windows],
                      predict(tiny_cross_encoder, question, [w.text for w in windows]),
                      strict=True))
    assert len(oracle) == len(windows)  # one window per document: scores map to passages
    real_open = Assistant.open

    def open_with_fakes(cls: type[Assistant], index: str, config: Config | None = None,
                        **_: object) -> Assistant:
        return real_open(index, config, embedder=KeywordEmbedder(), generator=EchoGenerator())

    monkeypatch.setattr(Assistant, "open", classmethod(open_with_fakes))
    result = CliRunner().invoke(cli, ["ask", "notes", question, "--json", "--show-context",
                                      "--reranker", str(tiny_cross_encoder), "-k", "2"])
    assert result.exit_code == 0, result.output
    passages = json.loads(result.stdout)["passages"]
    assert len(passages) == 2
    # The passages are the model's two best windows, with its scores, not fusion scores.
    best = sorted(oracle, key=lambda d: -oracle[d])[:2]
    assert [p["doc_id"] for p in passages] == best
    assert [p["score"] for p in passages] == pytest.approx([oracle[d] for d in best], abs=1e-5)


def test_reranking_is_off_by_default(tmp_path: Path) -> None:
    assert RetrievalConfig().reranker is None
    a = Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder())
    assert a.retriever.reranker is None


def test_missing_models_are_model_errors_with_a_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match=r"no cross-encoder directory at .*--reranker"):
        CrossEncoderReranker(str(tmp_path / "absent")).score("q", ["t"])
    with pytest.raises(ModelError, match="cannot load reranker ragmem-tests/no-such-reranker"):
        CrossEncoderReranker("ragmem-tests/no-such-reranker").score("q", ["t"])
    assert CrossEncoderReranker("never-loaded").score("q", []) == []


def test_rerank_of_nothing_is_nothing() -> None:
    class Fails:
        model_id = "fails"

        def score(self, question: str, texts: list[str]) -> list[float]:
            raise AssertionError("not called for no hits")

    assert rerank(Fails(), "q", []) == []
