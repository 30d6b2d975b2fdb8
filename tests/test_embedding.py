"""SentenceTransformerEmbedder on the real packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

from ragmem.config import EmbedderConfig
from ragmem.embedding import Embedder, SentenceTransformerEmbedder, from_config


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")


def test_constructing_loads_nothing() -> None:
    embedder = SentenceTransformerEmbedder("no-such-model-is-ever-loaded")
    assert embedder.model_id == "no-such-model-is-ever-loaded"
    assert embedder._model is None


def test_from_config_is_an_embedder() -> None:
    embedder: Embedder = from_config(EmbedderConfig(batch_size=8))
    assert embedder.model_id == "all-MiniLM-L6-v2"


def test_vectors_are_float32_unit_rows(minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm.embed(["The cat sleeps.", "Mars is red.", "x"])
    assert vectors.shape == (3, minilm.dim) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_no_rows(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)


def test_a_paraphrase_is_nearer_than_an_unrelated_sentence(
    minilm: SentenceTransformerEmbedder,
) -> None:
    query, paraphrase, unrelated = minilm.embed(
        [
            "How tall is the tallest volcano on Mars?",
            "What is the height of Olympus Mons, the biggest Martian volcano?",
            "Kittens are born with their eyes closed.",
        ]
    )
    assert query @ paraphrase > query @ unrelated + 0.3


def test_count_tokens_matches_the_tokenizer_with_cls_and_sep(
    minilm: SentenceTransformerEmbedder,
) -> None:
    text = "Olympus Mons is the tallest volcano in the solar system."
    tokenizer = minilm._model.tokenizer
    assert minilm.count_tokens(text) == len(tokenizer(text)["input_ids"])
    assert minilm.count_tokens("") == 2  # [CLS] [SEP]
    assert minilm.max_tokens == 256


def test_count_tokens_is_untruncated_after_embedding(minilm: SentenceTransformerEmbedder) -> None:
    long_text = "word " * 1000
    minilm.embed([long_text])  # leaves truncation set on the model's own tokenizer
    assert minilm.count_tokens(long_text) == 1002
