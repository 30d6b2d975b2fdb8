"""Shared fixtures: fakes that implement the real interfaces, and a temp index home."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragmem.config import AnsweringConfig, Config
from ragmem.generation import Generator, PromptState, load_generator
from ragmem.generation.causal import CausalGenerator
from ragmem.generation.scoring import TokenScorer
from ragmem.generation.token_trie import TokenTrie

CORPUS = {
    "cats.txt": (
        "Cats are small carnivorous mammals. They sleep for most of the day.\n\n"
        "A group of cats is called a clowder. Kittens are born blind."
    ),
    "space/mars.md": (
        "# Mars\n\nMars is the fourth planet from the Sun. Its red colour comes from iron oxide.\n"
        "Olympus Mons on Mars is the tallest volcano in the solar system."
    ),
    "space/moon.txt": (
        "The Moon orbits the Earth every 27.3 days. Neil Armstrong walked on the Moon in 1969.\n"
        "The Moon has no atmosphere to speak of."
    ),
}


class KeywordEmbedder:
    """Bag of lower-cased words hashed into 256 dims: ranking can be checked by hand."""

    model_id = "keyword-test"
    precision = "fp32"
    dim = 256
    max_tokens = 256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2


class EchoGenerator:
    """Answers with the first sentence of passage [1] and cites it: the pipeline, no model."""

    model_id = "echo-test"

    def __init__(self, context_length: int = 512) -> None:
        self._context_length = context_length

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def render(self, instruction: str, user: str) -> str:
        return f"{instruction}\n\n{user}\nAnswer:"

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """The sentence of passage [1] sharing most words with the question, cited."""
        passage = re.search(r"^\[1\] (.+?)(?:\n\n|\nQuestion:)", prompt, re.M | re.S)
        question = re.search(r"^Question: (.*)$", prompt, re.M)
        if not passage or not question:
            return "I don't know."
        words = set(re.findall(r"\w+", question.group(1).lower()))
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", passage.group(1))
        best = max(sentences, key=lambda s: len(words & set(re.findall(r"\w+", s.lower()))))
        return f"{best} [1]"

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        yield from re.findall(r"\S+\s*", self.generate(prompt, max_new_tokens))


class WordCountScorer(EchoGenerator, TokenScorer):
    """The echo, and a ``Scorer`` through the real ``TokenScorer``: a bag-of-words model
    whose next token is a word in proportion to how often the text so far holds it, so
    an option made of the prompt's own words scores highest. Its tokens are the words of
    two or more characters (an option letter is no evidence), hashed into 256 ids as
    ``KeywordEmbedder`` hashes them."""

    model_id = "word-count-test"
    vocab = 256

    def _plain_ids(self, text: str) -> list[int]:
        return [int(hashlib.md5(w.encode()).hexdigest(), 16) % self.vocab
                for w in re.findall(r"\w\w+", text.lower())]

    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        return self._plain_ids(prompt), "", ()

    def _after(self, ids: Sequence[int]) -> np.ndarray:
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=self.vocab)
        logits = counts.astype(np.float32)
        return logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        return self._after(ids), tuple(ids)

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        rows = []
        for node in nodes:
            path = []
            while node >= 0:
                path.append(trie.tokens[node])
                node = trie.parents[node]
            rows.append(self._after([*state.cache, *path[::-1]]))
        return np.array(rows, dtype=np.float32).reshape(len(nodes), self.vocab)


# Modules whose every test is slow (Ray clusters started and killed; the reader trained),
# marked here because their files are someone else's work in progress.
SLOW_MODULES = ("tests/test_ray_processes.py", "tests/training/test_reader.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.as_posix().endswith(SLOW_MODULES):
            item.add_marker(pytest.mark.slow)


# The fakes write; they do not read. A pipeline test with them answers in the generate
# mode, as "auto" did for them before the extractive reader (a real model, so its tests
# are slow) became the default: ECHO as a config, ``echo_mode`` for the command line.
ECHO = Config(answering=AnsweringConfig(mode="generate"))


@pytest.fixture
def echo_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMEM_ANSWERING_MODE", "generate")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMEM_HOME", str(tmp_path / "indexes"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# Where a real model is loaded: each gets the name it loads (a known name, a hub id, or a
# path); the guard below lets a fast test load only models it made in a temp folder.
MODEL_LOADS = {
    "ragmem.embedding.sentence_transformer.SentenceTransformerEmbedder._load": "model_id",
    "ragmem.embedding.onnx_runtime.OnnxEmbedder._load": "model_id",
    "ragmem.generation.transformers_model.TransformersGenerator._load": "model_id",
    "ragmem.generation.llamacpp.LlamaCppGenerator._load": "model_id",
    "ragmem.generation.numpy_llama.NumpyLlamaGenerator._config_of": "model_id",
    "ragmem.reranking.CrossEncoderReranker._load": "model_id",
}


def _is_real_model(name: str) -> bool:
    """A packaged or cached model (a known name, a hub id, a path outside the temp
    folder), as opposed to a tiny one a test built in a temp folder."""
    import tempfile

    path = Path(name).expanduser()
    return not path.is_dir() or not path.resolve().is_relative_to(
        Path(tempfile.gettempdir()).resolve())


@pytest.fixture(autouse=True)
def _fast_tests_load_no_real_model(request: pytest.FixtureRequest,
                                   monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test not marked ``slow`` that loads a real model fails, naming the model, so that
    ``make test-fast`` (``-m "not slow"``) stays fast and the marks stay true."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    import functools
    import importlib

    from ragmem.reading import Reader

    loaded: list[str] = []

    def guard(real: Any, attribute: str) -> Any:
        def load(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = real(self, *args, **kwargs)  # a model that is not there loads nothing
            name = str(getattr(self, attribute))
            if _is_real_model(name):
                loaded.append(name)
            return out
        return load

    for where, attribute in MODEL_LOADS.items():
        module, cls, method = where.rsplit(".", 2)
        owner = getattr(importlib.import_module(module), cls)
        monkeypatch.setattr(owner, method, guard(getattr(owner, method), attribute))
    real_reader = Reader.__dict__["_loaded"].func  # a cached_property: the packaged reader

    def reader_loaded(self: Reader) -> Any:
        out = real_reader(self)
        loaded.append(f"the reader ({self.config.base_model})")
        return out

    cached = functools.cached_property(reader_loaded)
    cached.__set_name__(Reader, "_loaded")
    monkeypatch.setattr(Reader, "_loaded", cached)
    yield
    if loaded:
        pytest.fail(f"{request.node.nodeid} loads {', '.join(sorted(set(loaded)))}: mark it "
                    "@pytest.mark.slow, or give it a fake or a tiny model", pytrace=False)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ragmem-cache")


@pytest.fixture(autouse=True)
def _cache_env(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMEM_CACHE", str(model_cache))


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for name, text in CORPUS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def keyword_embedder() -> KeywordEmbedder:
    return KeywordEmbedder()


@pytest.fixture
def echo_generator() -> EchoGenerator:
    return EchoGenerator()



WORDS = ("the cat sat on a mat . what did it do ? answer : dog ran far away big red "
         "city bank cellar robbers were tunnelling into").split()


def _word_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                   unk_token="<unk>", bos_token="<s>")


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny_causal(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Generator:
    """A randomly initialised 2-layer decoder with a word-level tokenizer: rotary (Llama,
    grouped-query attention) and learned absolute positions (GPT-2)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = _word_tokenizer()
    torch.manual_seed(0)
    vocab = len(tokenizer)
    if request.param == "llama":
        model: Any = LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4,
                                           n_positions=256))
    directory = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    generator = load_generator(str(directory), device="cpu")
    assert isinstance(generator, CausalGenerator)
    return generator
