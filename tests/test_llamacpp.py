"""The llama.cpp backend on the packaged SmolLM2 GGUF, checked against itself (a prompt
decoded from scratch) and against the transformers backend on the same model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ragmem.config import GeneratorConfig
from ragmem.errors import ModelError
from ragmem.generation import Generator, from_config, load_generator
from ragmem.generation.llamacpp import LlamaCppGenerator

INSTRUCTION = "Answer the question from the context in a few words."
CONTEXT = (
    "Context: [1] The robbers were tunnelling from the pawnbroker's cellar into the cellar of "
    "the City and Suburban Bank, which held thirty thousand napoleons from France.\n"
    "Question: Which bank's cellar were the robbers tunnelling into?"
)
OPTIONS = ["the City and Suburban Bank", "the City", "the pawnbroker's cellar", "France",
           "thirty thousand napoleons"]


def test_a_missing_llama_cpp_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    generator = from_config(GeneratorConfig(backend="llamacpp"))
    assert isinstance(generator, LlamaCppGenerator)
    with pytest.raises(ModelError, match=r"pip install 'ragmem\[llamacpp\]'"):
        generator.count_tokens("hello")


needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install 'ragmem[llamacpp]'; it compiles "
           "llama.cpp, >10 min on 2 cores, so CI leaves it out)",
)


@pytest.fixture(scope="module")
def llama() -> LlamaCppGenerator:
    return LlamaCppGenerator("SmolLM2-135M-Instruct", repetition_penalty=1.15, threads=2)


@pytest.fixture(scope="module")
def torch_smollm2() -> Generator:
    return load_generator("SmolLM2-135M-Instruct", device="cpu")


@needs_llama_cpp
def test_renders_and_tokenises_like_transformers(
    llama: LlamaCppGenerator, torch_smollm2: Generator
) -> None:
    prompt = llama.render(INSTRUCTION, CONTEXT)
    assert prompt == torch_smollm2.render(INSTRUCTION, CONTEXT)
    assert llama.count_tokens(prompt) == torch_smollm2.count_tokens(prompt)
    assert llama.context_length == 8192


@needs_llama_cpp
def test_continuations_match_a_decode_from_scratch(llama: LlamaCppGenerator) -> None:
    state = llama.prefill(llama.render(INSTRUCTION, CONTEXT))
    got = llama.continuation_logprobs(state, OPTIONS)
    for option, logprobs in zip(OPTIONS, got, strict=True):
        ids = llama.continuation_ids(state, option)
        llama._memory_rm(0)
        llama._live = None
        every = list(state.ids) + ids
        rows = llama._decode(every, 0, want=range(len(state.ids) - 1, len(every) - 1))
        expected = [row[t] for row, t in zip(rows, ids, strict=True)]
        assert np.allclose(logprobs, expected, atol=2e-3)


@needs_llama_cpp
def test_scores_agree_with_transformers(llama: LlamaCppGenerator,
                                        torch_smollm2: Generator) -> None:
    """Q4_1 weights in llama.cpp against the same weights dequantised in torch."""
    prompt = llama.render(INSTRUCTION, CONTEXT)
    ours = np.array(llama.score_options(prompt, OPTIONS))
    theirs = np.array(torch_smollm2.score_options(prompt, OPTIONS))
    assert np.corrcoef(ours, theirs)[0, 1] > 0.98
    assert int(np.argmax(ours)) == int(np.argmax(theirs))


@needs_llama_cpp
def test_next_logprobs_and_a_second_prompt(llama: LlamaCppGenerator) -> None:
    first = llama.prefill(llama.render(INSTRUCTION, CONTEXT))
    second = llama.prefill(llama.render(INSTRUCTION, "What is the capital of France?"))
    answer = llama.continuation_ids(first, "the City and Suburban Bank")
    # `first` is no longer in the context: its saved cache is put back.
    steps = llama.next_logprobs(first, [answer[:j] for j in range(len(answer))])[
        np.arange(len(answer)), answer]
    # The prefixes run one token per decode over the cache: exactly a decode of that kind.
    llama._restore(first)
    one_by_one = [first.next_logprobs[answer[0]]] + [
        llama._decode([answer[i]], len(first.ids) + i, want=[0])[0][answer[i + 1]]
        for i in range(len(answer) - 1)]
    assert np.allclose(steps, one_by_one, atol=1e-6)
    # The whole answer in one decode takes llama.cpp's batched kernels: the same model
    # to ~5e-3 in a log-prob on this answer (a wrong cache or position is off by >0.1).
    per_token = llama.continuation_logprobs(first, [answer])[0]
    assert np.allclose(steps, per_token, atol=2e-2)
    assert np.allclose(llama.next_logprobs(second, [[]])[0], second.next_logprobs)


@needs_llama_cpp
def test_generates_greedily_and_streams_the_same(llama: LlamaCppGenerator) -> None:
    prompt = llama.render(INSTRUCTION, "Context: The capital of France is Paris. "
                          "Question: What is the capital of France?")
    answer = llama.generate(prompt, 12)
    assert "Paris" in answer
    assert answer == llama.generate(prompt, 12)
    assert "".join(llama.stream(prompt, 12)) == answer


@needs_llama_cpp
def test_a_model_without_gguf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no GGUF model"):
        LlamaCppGenerator(str(tmp_path)).count_tokens("x")
