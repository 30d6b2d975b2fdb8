"""Generators on real models: a tiny T5 built and trained here, and the packaged SmolLM2."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ragmem.config import GeneratorConfig
from ragmem.generation import Generator, from_config, gguf_cache, load_generator
from ragmem.generation.causal import CausalGenerator
from ragmem.generation.seq2seq import Seq2SeqGenerator

CAPITALS = {"france": "paris", "germany": "berlin", "italy": "rome", "spain": "madrid"}


def _question(country: str) -> str:
    return f"what is the capital of {country} ?"


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word-level tokenizer and a 2-layer T5 (d_model 32), trained for a few hundred
    steps to answer the four capital questions; saved as a normal model directory."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = ["the", "a", "city", "is", "in", "big", "old", "river", "north", "south"]
    sentences = [_question(c) for c in CAPITALS] + list(CAPITALS.values())
    sentences += [f"{a} {b} {c} ." for a in words for b in words for c in CAPITALS.values()]
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        sentences, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"])
    )
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", backend.token_to_id("</s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = T5Config(  # type: ignore[call-arg]  # T5 reads it, the stub doesn't list it
        vocab_size=backend.get_vocab_size(), d_model=32, d_ff=64, d_kv=16, num_heads=2,
        num_layers=2, num_decoder_layers=2, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    questions = tokenizer([_question(c) for c in CAPITALS], padding=True, return_tensors="pt")
    labels = tokenizer(list(CAPITALS.values()), return_tensors="pt")["input_ids"]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    # One thread: the ops are tiny, and on a busy machine two OpenMP threads wait on each
    # other (measured 42 s against 7 s for this fixture at load average 6 on two cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(200):
            optimiser.zero_grad()
            model(**questions, labels=labels).loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    directory = tmp_path_factory.mktemp("tiny-t5")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_t5(tiny_t5_dir: Path) -> Generator:
    return load_generator(str(tiny_t5_dir), device="cpu")


def test_t5_is_loaded_as_seq2seq_with_its_default_context(tiny_t5: Generator) -> None:
    assert isinstance(tiny_t5, Seq2SeqGenerator)
    assert tiny_t5.context_length == 512


def test_t5_renders_plain_text(tiny_t5: Generator) -> None:
    assert tiny_t5.render("Answer.", "what ?") == "Answer.\n\nwhat ?"


def test_t5_counts_tokens_with_eos(tiny_t5: Generator) -> None:
    assert tiny_t5.count_tokens(_question("france")) == 7 + 1


def test_t5_generates_the_trained_answer_deterministically(tiny_t5: Generator) -> None:
    for country, capital in CAPITALS.items():
        first = tiny_t5.generate(_question(country), max_new_tokens=5)
        assert first == tiny_t5.generate(_question(country), max_new_tokens=5) == capital


def test_t5_stream_joins_to_generate(tiny_t5: Generator) -> None:
    prompt = _question("italy")
    assert "".join(tiny_t5.stream(prompt, 5)) == tiny_t5.generate(prompt, 5)


def test_t5_scores_prefer_the_trained_answer(tiny_t5: Generator) -> None:
    options = list(CAPITALS.values())
    for country, capital in CAPITALS.items():
        scores = tiny_t5.score_options(_question(country), options)
        assert all(math.isfinite(s) and s < 0 for s in scores)
        assert options[scores.index(max(scores))] == capital


def test_load_generator_of_a_missing_hub_id_is_a_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    from ragmem.errors import ModelError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="an id already in your Hugging Face cache"):
        load_generator("ragmem-tests/no-such-model")


# -- the packaged SmolLM2: GGUF, converted once to the safetensors cache ---------------

QUESTION = "Context: The capital of France is Paris. Question: What is the capital of France?"
INSTRUCTION = "Answer the question from the context in a few words."


@pytest.fixture(scope="session")
def smollm2(model_cache: Path) -> Iterator[Generator]:
    """Loaded from the GGUF: the first load converts it into ``model_cache``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGMEM_CACHE", str(model_cache))
        generator = from_config(GeneratorConfig(device="cpu", backend="torch"))
        started = time.perf_counter()
        assert generator.context_length == 8192  # loads
        print(f"\nSmolLM2 first load (GGUF -> cache): {time.perf_counter() - started:.1f} s")
    yield generator


@pytest.fixture(scope="session")
def smollm2_prompt(smollm2: Generator) -> str:
    return smollm2.render(INSTRUCTION, QUESTION)


@pytest.fixture(scope="session")
def smollm2_answer(smollm2: Generator, smollm2_prompt: str) -> str:
    return smollm2.generate(smollm2_prompt, max_new_tokens=12)


@pytest.mark.slow
def test_smollm2_renders_its_chat_template(smollm2: Generator, smollm2_prompt: str) -> None:
    assert isinstance(smollm2, CausalGenerator)
    assert smollm2_prompt.startswith("<|im_start|>system\n" + INSTRUCTION + "<|im_end|>")
    assert smollm2_prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
def test_smollm2_answers_from_the_context(smollm2_answer: str) -> None:
    assert "Paris" in smollm2_answer


@pytest.mark.slow
def test_smollm2_stream_joins_to_generate(
    smollm2: Generator, smollm2_prompt: str, smollm2_answer: str
) -> None:
    pieces = list(smollm2.stream(smollm2_prompt, max_new_tokens=12))
    assert len(pieces) > 1
    assert "".join(pieces) == smollm2_answer


@pytest.mark.slow
def test_smollm2_scores_the_right_option_highest(smollm2: Generator, smollm2_prompt: str) -> None:
    scores = smollm2.score_options(smollm2_prompt, ["Paris", "Berlin", "London"])
    assert scores[0] == max(scores)
    assert all(math.isfinite(s) for s in scores)


@pytest.mark.slow
def test_smollm2_counts_the_prompt_as_generate_encodes_it(
    smollm2: Generator, smollm2_prompt: str
) -> None:
    tokenizer = smollm2._tokenizer  # the rendered prompt carries its own special tokens
    expected = len(tokenizer(smollm2_prompt, add_special_tokens=False)["input_ids"])
    assert smollm2.count_tokens(smollm2_prompt) == expected


@pytest.mark.slow
def test_smollm2_reloads_fast_from_the_cache_and_generates_the_same(
    smollm2_prompt: str,
    smollm2_answer: str,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fixture's generator runs the weights dequantised from the GGUF; this one reads
    them back from the safetensors cache: greedy decoding must not tell them apart."""
    monkeypatch.setenv("RAGMEM_CACHE", str(model_cache))
    assert (model_cache / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()

    def no_dequantising(*args: object) -> None:
        raise AssertionError("the cache was not used: the GGUF was dequantised again")

    # A structural check, not a timing one: a wall-clock bound (it was < 2 s) failed CI at
    # 2.13 s on a busy machine although the cache was read.
    monkeypatch.setattr(gguf_cache, "_dequantise", no_dequantising)
    started = time.perf_counter()
    cached = load_generator("SmolLM2-135M-Instruct", device="cpu")
    assert cached.context_length == 8192  # loads
    print(f"\nSmolLM2 cached load: {time.perf_counter() - started:.2f} s")
    assert cached.generate(smollm2_prompt, max_new_tokens=12) == smollm2_answer


# -- prefill + continuations: the prompt runs once, continuations reuse its cache -----


def old_score_options(generator: Generator, prompt: str, options: list[str]) -> list[float]:
    """The causal ``score_options`` before prefill existed, kept as the oracle: the whole
    prompt repeated in every row, options right-padded, no cache."""
    import torch

    model = generator._model
    tokenizer = generator._tokenizer
    prompt_ids = generator._encode(prompt)["input_ids"][0].tolist()
    option_ids = [list(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in options]
    width = max(len(ids) for ids in option_ids)
    pad = tokenizer.pad_token_id or 0
    rows = [prompt_ids + ids + [pad] * (width - len(ids)) for ids in option_ids]
    mask = [[1] * (len(prompt_ids) + len(ids)) + [0] * (width - len(ids)) for ids in option_ids]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor(rows), attention_mask=torch.tensor(mask),
                       logits_to_keep=width + 1).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = torch.tensor([ids + [pad] * (width - len(ids)) for ids in option_ids])
        picked = logprobs.gather(-1, targets[..., None])[..., 0]
        keep = torch.tensor(mask)[:, len(prompt_ids):].bool()
        return [float(s) for s in (picked * keep).sum(dim=1)]


def full_logprobs(generator: Generator, ids: list[int]) -> np.ndarray:
    """(len(ids), vocab) log-probs of the token after each position: one plain forward."""
    import torch

    with torch.inference_mode():
        logits = generator._model(input_ids=torch.tensor([ids])).logits[0]
        return torch.log_softmax(logits.float(), dim=-1).numpy()


TINY_PROMPT = "the cat sat on a mat . what did it do ? answer :"
TINY_OPTIONS = ["sat", "sat on a mat", "ran far away", "sat on a big red mat", "dog", "sat on"]


def test_score_options_matches_the_old_implementation(tiny_causal: Generator) -> None:
    new = tiny_causal.score_options(TINY_PROMPT, TINY_OPTIONS)
    old = old_score_options(tiny_causal, TINY_PROMPT, TINY_OPTIONS)
    assert np.allclose(new, old, atol=1e-4)
    assert len(set(np.round(new, 3))) == len(TINY_OPTIONS)  # the options really differ


def test_continuation_logprobs_match_a_full_forward(tiny_causal: Generator) -> None:
    state = tiny_causal.prefill(TINY_PROMPT)
    # Text and token ids mix; shared prefixes ("sat on ...") share trie nodes.
    ids = tiny_causal.continuation_ids(state, "red city bank")
    got = tiny_causal.continuation_logprobs(state, [*TINY_OPTIONS, ids])
    for option, logprobs in zip([*TINY_OPTIONS, "red city bank"], got, strict=True):
        cont = tiny_causal.continuation_ids(state, option)
        full = full_logprobs(tiny_causal, list(state.ids) + cont)
        expected = [full[len(state.ids) - 1 + j, t] for j, t in enumerate(cont)]
        assert logprobs.dtype == np.float32 and logprobs.shape == (len(cont),)
        assert np.allclose(logprobs, expected, atol=1e-4)


def test_next_logprobs_match_a_full_forward(tiny_causal: Generator) -> None:
    state = tiny_causal.prefill(TINY_PROMPT)
    sat_on = tiny_causal.continuation_ids(state, "sat on")
    prefixes = [[], sat_on[:1], sat_on, sat_on]  # repeated prefixes are fine
    got = tiny_causal.next_logprobs(state, prefixes)
    assert got.shape == (4, state.next_logprobs.shape[0])
    for prefix, row in zip(prefixes, got, strict=True):
        full = full_logprobs(tiny_causal, list(state.ids) + prefix)
        assert np.allclose(row, full[-1], atol=1e-4)


def test_a_state_is_reused_unchanged(tiny_causal: Generator) -> None:
    state = tiny_causal.prefill(TINY_PROMPT)
    first = tiny_causal.continuation_logprobs(state, TINY_OPTIONS)
    tiny_causal.next_logprobs(state, [[3, 4, 5]])
    again = tiny_causal.continuation_logprobs(state, TINY_OPTIONS)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    reordered = tiny_causal.continuation_logprobs(state, TINY_OPTIONS[::-1])[::-1]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(first, reordered, strict=True))


def test_many_continuations_are_split_into_chunks(
    tiny_causal: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ragmem.generation.token_trie

    state = tiny_causal.prefill(TINY_PROMPT)
    whole = tiny_causal.continuation_logprobs(state, TINY_OPTIONS)
    monkeypatch.setattr(ragmem.generation.token_trie, "MAX_TREE_TOKENS", 3)
    split = tiny_causal.continuation_logprobs(state, TINY_OPTIONS)
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(whole, split, strict=True))


def test_empty_prompt_or_continuation_is_a_clear_error(tiny_causal: Generator) -> None:
    with pytest.raises(ValueError, match="non-empty prompt"):
        tiny_causal.prefill("")
    state = tiny_causal.prefill(TINY_PROMPT)
    with pytest.raises(ValueError, match="non-empty"):
        tiny_causal.continuation_logprobs(state, [""])
    with pytest.raises(ValueError, match="non-empty"):
        tiny_causal.continuation_logprobs(state, [[]])


def test_t5_continuations_score_the_decoder_output(tiny_t5: Generator) -> None:
    """The encoder runs once; option scores keep their EOS, as before prefill existed."""
    prompt = _question("spain")
    state = tiny_t5.prefill(prompt)
    options = list(CAPITALS.values())
    scores = tiny_t5.score_options(prompt, options)
    with_eos = [list(tiny_t5._tokenizer(o)["input_ids"]) for o in options]
    summed = [float(lp.sum()) for lp in tiny_t5.continuation_logprobs(state, with_eos)]
    assert np.allclose(scores, summed, atol=1e-5)
    assert options[int(np.argmax(scores))] == "madrid"
    rows = tiny_t5.next_logprobs(state, [[], with_eos[3][:1]])
    assert np.allclose(rows[0], state.next_logprobs)
    assert int(rows[0].argmax()) == with_eos[3][0]  # "madrid" is its first token


SPAN_CONTEXT = (
    "Context: [1] The robbers were tunnelling from the pawnbroker's cellar into the cellar of "
    "the City and Suburban Bank, which held thirty thousand napoleons from France. "
    "[2] Holmes beat upon the pavement with his stick before he went to the bank.\n"
    "Question: Which bank's cellar were the robbers tunnelling into?"
)
SPAN_OPTIONS = ["the City and Suburban Bank", "the City", "City and Suburban Bank",
                "the pawnbroker's cellar", "France", "thirty thousand napoleons", "Holmes"]


@pytest.mark.slow
def test_smollm2_prefill_scores_match_the_old_implementation(smollm2: Generator) -> None:
    prompt = smollm2.render(INSTRUCTION, SPAN_CONTEXT)
    new = smollm2.score_options(prompt, SPAN_OPTIONS)
    assert np.allclose(new, old_score_options(smollm2, prompt, SPAN_OPTIONS), atol=1e-4)
    assert len(set(np.round(new, 2))) == len(SPAN_OPTIONS)


@pytest.mark.slow
def test_smollm2_continuations_are_tokenised_as_after_the_prompt(smollm2: Generator) -> None:
    chat = smollm2.prefill(smollm2.render(INSTRUCTION, QUESTION))
    # After the assistant turn ("...assistant\n") an answer starts a new word, no space.
    assert smollm2.continuation_ids(chat, "Paris") == smollm2._plain_ids("Paris")
    plain = smollm2.prefill("Question: What is the capital of France?\nAnswer:")
    with_space = smollm2.continuation_ids(plain, " Paris")
    assert smollm2._plain_ids("Answer: Paris")[-len(with_space):] == with_space
    # A space the prompt already ends with would merge with the answer's first word: the
    # prompt keeps its tokens and the answer is tokenised alone.
    trailing = smollm2.prefill("Question: What is the capital of France?\nAnswer: ")
    assert smollm2.continuation_ids(trailing, "Paris") == smollm2._plain_ids("Paris")


@pytest.mark.slow
def test_smollm2_next_logprobs_follow_the_continuation(smollm2: Generator) -> None:
    state = smollm2.prefill(smollm2.render(INSTRUCTION, SPAN_CONTEXT))
    answer = smollm2.continuation_ids(state, "the City and Suburban Bank")
    steps = smollm2.next_logprobs(state, [answer[:j] for j in range(len(answer))])
    per_token = smollm2.continuation_logprobs(state, [answer])[0]
    assert np.allclose(steps[np.arange(len(answer)), answer], per_token, atol=1e-4)


# -- int8 dynamic quantisation of the linear layers -------------------------------------


# On SmolLM2, int8 (per-tensor, every linear layer) changes the answers: option-score
# correlation with fp32 0.40, wrong greedy answer (eval/reports/generator-speed.md), so it
# stays off by default and only its mechanics are tested here.
def test_int8_scores_follow_fp32(tiny_causal: Generator) -> None:
    int8 = load_generator(tiny_causal.model_id, device="cpu", quantization="int8")
    fp32 = tiny_causal.score_options(TINY_PROMPT, TINY_OPTIONS)
    quantised = int8.score_options(TINY_PROMPT, TINY_OPTIONS)
    assert not np.allclose(fp32, quantised, atol=1e-6)  # really quantised
    assert np.corrcoef(fp32, quantised)[0, 1] > 0.95


def test_an_unknown_quantisation_is_a_model_error(tiny_causal: Generator) -> None:
    from ragmem.errors import ModelError

    with pytest.raises(ModelError, match="'none' or 'int8'"):
        load_generator(tiny_causal.model_id, device="cpu", quantization="int4").count_tokens("a")


def test_prefill_shared_runs_the_common_start_once_and_matches_prefill(
        tiny_causal: Generator) -> None:
    prompts = [TINY_PROMPT + " one two", TINY_PROMPT + " three"]
    shared = tiny_causal.prefill_shared(prompts)
    for prompt, state in zip(prompts, shared, strict=True):
        alone = tiny_causal.prefill(prompt)
        assert state.ids == alone.ids and state.tail_ids == alone.tail_ids
        np.testing.assert_allclose(state.next_logprobs, alone.next_logprobs, atol=1e-4)
        (a,), (b,) = (tiny_causal.continuation_logprobs(s, [[5, 6, 7]]) for s in (state, alone))
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_continuation_states_are_the_full_forwards_hidden_states(tiny_causal: Generator) -> None:
    import torch

    state = tiny_causal.prefill(TINY_PROMPT)
    logprobs, states = tiny_causal.continuation_states(state, TINY_OPTIONS, (1, -1))
    assert states.shape == (len(TINY_OPTIONS), 2, tiny_causal.hidden_size())
    for got, want in zip(logprobs, tiny_causal.continuation_logprobs(state, TINY_OPTIONS),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    model = tiny_causal._loaded()  # type: ignore[attr-defined]
    for option, row in zip(TINY_OPTIONS, states, strict=True):
        ids = list(state.ids) + tiny_causal.continuation_ids(state, option)
        with torch.inference_mode():
            hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        for k, layer in enumerate((1, -1)):
            np.testing.assert_allclose(row[k], hidden[layer][0, -1].numpy(), atol=1e-4)
