"""The numpy generator against the transformers one on the same weights: a tiny random
Llama built here (fast), and the packaged SmolLM2 (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmem.config import GeneratorConfig
from ragmem.errors import ModelError
from ragmem.generation import load_generator
from ragmem.generation.causal import CausalGenerator
from ragmem.generation.factory import backend_for, from_config
from ragmem.generation.numpy_llama import NumpyLlamaGenerator, runs_on_numpy
from ragmem.models import resolve
from tests.conftest import _word_tokenizer

PROMPT = "the cat sat on a mat . what did it do ? answer :"
OPTIONS = ["sat", "sat on a mat", "ran far away", "sat on a big red mat", "dog", "sat on"]
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
            "{% if add_generation_prompt %}answer :{% endif %}")


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 3-layer Llama (grouped-query attention, untied head) with a word-level
    tokenizer and a chat template, saved as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _word_tokenizer()
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False, eos_token_id=tokenizer.convert_tokens_to_ids("dog")))
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pair(tiny_llama_dir: Path) -> tuple[NumpyLlamaGenerator, CausalGenerator]:
    torch_generator = load_generator(str(tiny_llama_dir), device="cpu")
    assert isinstance(torch_generator, CausalGenerator)
    return NumpyLlamaGenerator(str(tiny_llama_dir)), torch_generator


def test_auto_runs_a_llama_on_numpy_and_anything_else_on_torch(tiny_llama_dir: Path) -> None:
    assert runs_on_numpy(resolve(str(tiny_llama_dir), "generator"))
    assert backend_for(GeneratorConfig(model=str(tiny_llama_dir), device="cpu")) == "numpy"
    assert isinstance(from_config(GeneratorConfig(model=str(tiny_llama_dir), device="cpu")),
                      NumpyLlamaGenerator)
    # The packaged SmolLM2 (a Llama GGUF) is decided on without loading it.
    assert backend_for(GeneratorConfig(device="cpu")) == "numpy"
    assert backend_for(GeneratorConfig(device="cpu", backend="torch")) == "torch"
    assert backend_for(GeneratorConfig(device="cpu", quantization="int8")) == "torch"
    assert backend_for(GeneratorConfig(device="cuda:0")) == "torch"


def test_a_model_that_is_no_llama_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    assert not runs_on_numpy(resolve(str(tmp_path), "generator"))
    with pytest.raises(ModelError, match="RAGMEM_GENERATOR_BACKEND=torch"):
        NumpyLlamaGenerator(str(tmp_path)).hidden_size()


def test_prompt_tokens_render_and_counts_match_transformers(
        pair: tuple[NumpyLlamaGenerator, CausalGenerator]) -> None:
    numpy_generator, torch_generator = pair
    rendered = numpy_generator.render("answer", "what did the cat do ?")
    assert rendered == torch_generator.render("answer", "what did the cat do ?")
    assert rendered.startswith("<s>system : answer . <s>user")
    assert numpy_generator.prefill(rendered).ids == torch_generator.prefill(rendered).ids
    for text in (PROMPT, rendered, "dog"):
        assert numpy_generator.count_tokens(text) == torch_generator.count_tokens(text)
    assert numpy_generator.context_length == torch_generator.context_length == 256
    assert numpy_generator.end_of_answer_ids() == torch_generator.end_of_answer_ids()


def test_scores_and_hidden_states_match_transformers(
        pair: tuple[NumpyLlamaGenerator, CausalGenerator]) -> None:
    numpy_generator, torch_generator = pair
    ours, theirs = numpy_generator.prefill(PROMPT), torch_generator.prefill(PROMPT)
    assert np.abs(ours.next_logprobs - theirs.next_logprobs).max() < 1e-4
    layers = [0, 1, -1]
    lp, states = numpy_generator.continuation_states(ours, OPTIONS, layers)
    lp_t, states_t = torch_generator.continuation_states(theirs, OPTIONS, layers)
    for a, b in zip(lp, lp_t, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert states.shape == states_t.shape == (len(OPTIONS), 3, 48)
    assert np.abs(states - states_t).max() < 1e-4
    scores = numpy_generator.score_options(PROMPT, OPTIONS)
    assert np.allclose(scores, torch_generator.score_options(PROMPT, OPTIONS), atol=1e-4)
    assert len(set(np.round(scores, 3))) == len(OPTIONS)  # the options really differ


def test_shared_prefill_and_the_state_are_reused_unchanged(
        pair: tuple[NumpyLlamaGenerator, CausalGenerator]) -> None:
    numpy_generator, _ = pair
    prompts = [PROMPT, PROMPT.replace("mat", "big red mat")]
    shared = numpy_generator.prefill_shared(prompts)
    for prompt, state in zip(prompts, shared, strict=True):
        alone = numpy_generator.prefill(prompt)
        assert np.abs(state.next_logprobs - alone.next_logprobs).max() < 1e-4
    before = numpy_generator.continuation_logprobs(shared[0], OPTIONS)
    numpy_generator.continuation_logprobs(shared[0], ["dog ran far away"])
    after = numpy_generator.continuation_logprobs(shared[0], OPTIONS)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b)


def test_greedy_text_matches_transformers_with_the_repetition_penalty(
        tiny_llama_dir: Path) -> None:
    numpy_generator = NumpyLlamaGenerator(str(tiny_llama_dir), repetition_penalty=1.15)
    torch_generator = load_generator(str(tiny_llama_dir), device="cpu", repetition_penalty=1.15)
    text = numpy_generator.generate(PROMPT, max_new_tokens=12)
    assert text == torch_generator.generate(PROMPT, max_new_tokens=12)
    assert text  # the random model writes something before its end token
    assert "".join(numpy_generator.stream(PROMPT, max_new_tokens=12)) == text


@pytest.mark.slow
def test_smollm2_on_numpy_scores_as_on_torch() -> None:
    numpy_generator = from_config(GeneratorConfig(device="cpu"))
    torch_generator = from_config(GeneratorConfig(device="cpu", backend="torch"))
    assert isinstance(numpy_generator, NumpyLlamaGenerator)
    instruction = "Answer the question from the context in a few words."
    question = "Context: The capital of France is Paris. Question: What is the capital of France?"
    prompt = numpy_generator.render(instruction, question)
    assert prompt == torch_generator.render(instruction, question)
    ours, theirs = numpy_generator.prefill(prompt), torch_generator.prefill(prompt)
    assert ours.ids == theirs.ids
    assert np.abs(ours.next_logprobs - theirs.next_logprobs).max() < 1e-3
    options = ["Paris", "Berlin", "The capital is Paris", "Rome"]
    lp, states = numpy_generator.continuation_states(ours, options, [20, -1])
    lp_t, states_t = torch_generator.continuation_states(theirs, options, [20, -1])
    assert max(np.abs(a - b).max() for a, b in zip(lp, lp_t, strict=True)) < 1e-3
    assert np.abs(states - states_t).max() < 1e-3 * np.abs(states_t).max()
    answer = numpy_generator.generate(prompt, max_new_tokens=12)
    assert answer == torch_generator.generate(prompt, max_new_tokens=12)
    assert "Paris" in answer
