"""The embedders on the real packaged all-MiniLM-L6-v2: PyTorch fp32, ONNX int8 and fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragmem.config import EmbedderConfig
from ragmem.embedding import (
    Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    default_precision,
    from_config,
    onnx_model,
)
from ragmem.embedding.openvino_int8 import calibration_texts, openvino_model
from ragmem.errors import ConfigError, ModelError
from ragmem.models import resolve


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


@pytest.mark.slow
def test_vectors_are_float32_unit_rows(minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm.embed(["The cat sleeps.", "Mars is red.", "x"])
    assert vectors.shape == (3, minilm.dim) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_empty_input_gives_no_rows(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)


@pytest.mark.slow
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


@pytest.mark.slow
def test_count_tokens_matches_the_tokenizer_with_cls_and_sep(
    minilm: SentenceTransformerEmbedder,
) -> None:
    text = "Olympus Mons is the tallest volcano in the solar system."
    tokenizer = minilm._model.tokenizer
    assert minilm.count_tokens(text) == len(tokenizer(text)["input_ids"])
    assert minilm.count_tokens("") == 2  # [CLS] [SEP]
    assert minilm.max_tokens == 256


@pytest.mark.slow
def test_count_tokens_is_untruncated_after_embedding(minilm: SentenceTransformerEmbedder) -> None:
    long_text = "word " * 1000
    minilm.embed([long_text])  # leaves truncation set on the model's own tokenizer
    assert minilm.count_tokens(long_text) == 1002


# -- int8 (ONNX Runtime) --------------------------------------------------------------

SENTENCES = [
    "How tall is the tallest volcano on Mars?",
    "Olympus Mons is the tallest volcano in the solar system, about 22 km high.",
    "Kittens are born with their eyes closed and open them after about a week.",
    "The Moon orbits the Earth every 27.3 days.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "Neil Armstrong walked on the Moon in 1969. " * 40,  # over the 256-token limit
]


@pytest.fixture(scope="session")
def minilm_int8() -> OnnxEmbedder:
    return OnnxEmbedder("all-MiniLM-L6-v2", "int8")


@pytest.mark.slow
def test_int8_vectors_are_close_to_fp32(minilm: SentenceTransformerEmbedder,
                                        minilm_int8: OnnxEmbedder) -> None:
    fp32 = minilm.embed(SENTENCES)
    int8 = minilm_int8.embed(SENTENCES)
    assert int8.shape == fp32.shape == (len(SENTENCES), 384) and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosine = (int8 * fp32).sum(axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, cosine
    # Closer to its own fp32 vector than to any other sentence's.
    assert (np.argmax(int8 @ fp32.T, axis=1) == np.arange(len(SENTENCES))).all()


@pytest.mark.slow
def test_int8_counts_and_limits_like_the_model(minilm: SentenceTransformerEmbedder,
                                               minilm_int8: OnnxEmbedder) -> None:
    assert minilm_int8.precision == "int8" and minilm.precision == "fp32"
    assert (minilm_int8.dim, minilm_int8.max_tokens) == (384, 256)
    for text in SENTENCES:
        assert minilm_int8.count_tokens(text) == minilm.count_tokens(text)
    assert minilm_int8.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_onnx_fp32_matches_torch(minilm: SentenceTransformerEmbedder) -> None:
    onnx = OnnxEmbedder("all-MiniLM-L6-v2", "fp32")
    cosine = (onnx.embed(SENTENCES) * minilm.embed(SENTENCES)).sum(axis=1)
    assert cosine.min() > 0.9999


@pytest.mark.slow
def test_int8_is_quantised_once_into_the_cache(minilm_int8: OnnxEmbedder) -> None:
    minilm_int8.embed(["load"])
    resolved = resolve("all-MiniLM-L6-v2", "embedder")
    folder = openvino_model(resolved)
    assert folder.parent == onnx_model(resolved).parent  # beside the fp32 export
    weights = folder / "model.bin"
    assert weights.stat().st_size < 30e6  # int8 weights (fp32's are 90 MB)
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["precision"] == "int8" and spec["pooling"] == "mean"
    built = weights.stat().st_mtime_ns
    assert openvino_model(resolved) == folder and weights.stat().st_mtime_ns == built


@pytest.mark.slow
def test_int8_embeds_from_threads_at_once(minilm_int8: OnnxEmbedder) -> None:
    # The server embeds questions from several threads: each call its own infer request.
    from concurrent.futures import ThreadPoolExecutor

    alone = [minilm_int8.embed([s]) for s in SENTENCES]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda s: minilm_int8.embed([s]), SENTENCES * 3))
    for i, vector in enumerate(together):
        np.testing.assert_allclose(vector, alone[i % len(SENTENCES)], atol=1e-5)


def test_int8_calibrates_on_the_demo_corpus_windows() -> None:
    from tokenizers import Tokenizer

    folder = resolve("all-MiniLM-L6-v2", "embedder").path
    tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")
    texts = calibration_texts(tokenizer)
    assert len(texts) >= 200 and len(set(texts)) == len(texts)
    assert all(len(tokenizer.encode(t).ids) <= 256 for t in texts)
    assert any("red-headed" in t.lower() for t in texts)


def test_a_quantisation_far_from_fp32_is_refused() -> None:
    from ragmem.embedding.openvino_int8 import _check

    class Fixed:
        def __init__(self, rows: np.ndarray) -> None:
            self.rows = rows

        def embed(self, texts: object) -> np.ndarray:
            return self.rows

    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 8))
    good /= np.linalg.norm(good, axis=1, keepdims=True)
    _check(Fixed(good), Fixed(good), "m")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="RAGMEM_EMBEDDER_PRECISION=fp32"):
        _check(Fixed(good), Fixed(-good), "m")  # type: ignore[arg-type]


def test_from_config_picks_the_backend_by_precision() -> None:
    assert isinstance(from_config(EmbedderConfig(precision="int8")), OnnxEmbedder)
    # fp32 on a CPU runs on ONNX Runtime (installed here), unless torch is asked for.
    auto = from_config(EmbedderConfig(precision="fp32", device="cpu"))
    assert isinstance(auto, OnnxEmbedder) and auto.precision == "fp32"
    torch_fp32 = from_config(EmbedderConfig(precision="fp32", backend="torch"))
    assert isinstance(torch_fp32, SentenceTransformerEmbedder)
    onnx = from_config(EmbedderConfig(precision="fp32", backend="onnx"))
    assert isinstance(onnx, OnnxEmbedder) and onnx.precision == "fp32"
    # auto on a CPU: int8 on OpenVINO; the torch backend asked for keeps fp32.
    assert from_config(EmbedderConfig(device="cpu")).precision == "int8"
    torch_auto = from_config(EmbedderConfig(device="cpu", backend="torch"))
    assert isinstance(torch_auto, SentenceTransformerEmbedder) and torch_auto.precision == "fp32"
    with pytest.raises(ModelError, match="GPU"):
        from_config(EmbedderConfig(precision="fp16", device="cpu"))
    # Batches: 64 windows on a CPU, 256 on a GPU (built lazily: no GPU needed to check).
    gpu = from_config(EmbedderConfig(precision="fp16", device="cuda:0"))
    assert isinstance(gpu, SentenceTransformerEmbedder) and gpu.batch_size == 256
    cpu = from_config(EmbedderConfig(precision="fp32", device="cpu"))
    assert cpu.batch_size == 64
    # An unknown precision never reaches from_config: the typed config refuses it.
    with pytest.raises(ConfigError, match="'auto', 'fp32', 'fp16', 'int8'; got 'int4'"):
        from_config(EmbedderConfig(precision="int4"))  # type: ignore[arg-type]


def test_auto_precision_is_fp32_on_a_cpu_without_openvino(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    assert default_precision("cpu") == "fp32"
    assert default_precision("cuda:0") == "fp16"
