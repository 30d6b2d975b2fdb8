"""Prompt -> text: causal and seq2seq generators over transformers, loaded on first use.

    >>> generator = load_generator("SmolLM2-135M-Instruct")       # doctest: +SKIP
    >>> prompt = generator.render("Answer briefly.", "What is 2 + 2?")  # doctest: +SKIP
    >>> generator.generate(prompt, max_new_tokens=8)               # doctest: +SKIP
    '2 + 2 = 4.'

Decoding is greedy, so the same prompt always gives the same text. A packaged GGUF model
is dequantised once and kept as safetensors under ``cache_home() / "models"``: reading
the GGUF takes tens of seconds, the cache well under one.
"""

from __future__ import annotations

import copy
import inspect
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmem.config import GeneratorConfig
from ragmem.errors import ModelError
from ragmem.gguf_cache import load_gguf
from ragmem.models import load_error, resolve
from ragmem.token_trie import TokenTrie, chunks, common_prefix

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer


Continuation = str | Sequence[int]  # text as it follows the prompt, or its token ids
# Prompt tokens re-tokenised with a continuation: enough to see any merge at the boundary.
TAIL_TOKENS = 4


@dataclass(frozen=True, eq=False)
class PromptState:
    """A prompt run through the model once (``Generator.prefill``): every continuation
    scored after it reuses its keys and values instead of running the prompt again.

    ``next_logprobs`` is the (vocab,) float32 log-distribution of the token after the
    prompt. ``cache`` is the backend's own: a transformers KV cache, an encoder output,
    a llama.cpp context position. Reading is thread-safe; nothing mutates a state.
    """

    prompt: str
    ids: tuple[int, ...]
    next_logprobs: np.ndarray = field(repr=False)
    cache: Any = field(repr=False)
    # The prompt's last tokens and the text they came from: a continuation is tokenised
    # together with them, so it gets the tokens it would have after the prompt.
    tail_text: str = field(default="", repr=False)
    tail_ids: tuple[int, ...] = field(default=(), repr=False)


class Generator(ABC):
    """A model that writes text after a prompt and scores continuations of it. Scoring is
    written once here, on two backend steps: ``_prefill`` (run the prompt) and
    ``_node_logprobs`` (run a trie of continuation tokens after it)."""

    model_id: str
    resumes_prompts = False  # whether _resume can run more prompt after a _prefill cache
    exposes_states = False  # whether _node_forward returns hidden states

    @property
    def hidden_size(self) -> int | None:
        """The width of ``continuation_states``' hidden states; None without them."""
        return None

    @abstractmethod
    def render(self, instruction: str, user: str) -> str:
        """The prompt string for a system ``instruction`` and a ``user`` message."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """The most tokens the model attends to, prompt and answer together."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, as ``generate`` would encode it."""

    @abstractmethod
    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedy text after ``prompt``, stripped."""

    @abstractmethod
    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        """The text of ``generate`` in pieces: ``"".join(stream(p, n)) == generate(p, n)``."""

    @abstractmethod
    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        """The (vocab,) log-probs after the prompt ``ids``, and the state to reuse."""

    @abstractmethod
    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        """(len(nodes), vocab) float32 log-probs of the token after each trie node, the
        prompt before the trie."""

    @abstractmethod
    def _plain_ids(self, text: str) -> list[int]:
        """``text``'s tokens, no special tokens added."""

    @abstractmethod
    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        """The prompt's ids as ``generate`` encodes them, and its tail (see PromptState)."""

    def _option_ids(self, state: PromptState, option: str) -> list[int]:
        """The tokens ``score_options`` scores for ``option``."""
        return self.continuation_ids(state, option)

    # -- scoring continuations of one prompt -------------------------------------------
    def prefill(self, prompt: str) -> PromptState:
        """Run ``prompt`` through the model once; score continuations of it with
        ``continuation_logprobs`` and ``next_logprobs`` at the cost of their own tokens."""
        ids, tail_text, tail_ids = self._prompt_tokens(prompt)
        if not ids:
            raise ValueError("prefill needs a non-empty prompt")
        next_logprobs, cache = self._prefill(ids)
        return PromptState(prompt, tuple(ids), next_logprobs, cache, tail_text, tail_ids)

    def prefill_shared(self, prompts: Sequence[str]) -> list[PromptState]:
        """``prefill`` each of ``prompts``, running their common first tokens once: prompts
        that differ only at the end (one context, two questions) cost the context once
        plus their own ends. Each state is the one ``prefill`` would give, up to float
        rounding. A backend that cannot resume a prompt (``resumes_prompts`` false)
        prefills each in full."""
        if len(prompts) < 2 or not self.resumes_prompts:
            return [self.prefill(p) for p in prompts]
        encoded = [self._prompt_tokens(p) for p in prompts]
        shared = common_prefix([ids for ids, _, _ in encoded])
        shared = min([shared, *(len(ids) - 1 for ids, _, _ in encoded)])  # each keeps a token
        if shared < 1:
            return [self.prefill(p) for p in prompts]
        _, cache = self._prefill(encoded[0][0][:shared])
        out = []
        for prompt, (ids, tail_text, tail_ids) in zip(prompts, encoded, strict=True):
            next_logprobs, resumed = self._resume(cache, ids[shared:])
            out.append(PromptState(prompt, tuple(ids), next_logprobs, resumed, tail_text,
                                   tail_ids))
        return out

    def _resume(self, cache: Any, ids: list[int]) -> tuple[np.ndarray, Any]:
        """``_prefill``'s result for the cached prompt followed by ``ids``, leaving
        ``cache`` as it was."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume a prompt")

    def continuation_ids(self, state: PromptState, text: str) -> list[int]:
        """The tokens of ``text`` as they follow ``state``'s prompt: tokenised together with
        the prompt's last tokens, so a BPE merge across the boundary is what the model
        would see (after a chat template's assistant turn, an answer starts with no space;
        after ``Answer:``, pass ``" Paris"``). When the joint tokens would change the
        prompt's own last tokens, ``text`` is tokenised alone."""
        if state.tail_ids:
            joint = self._plain_ids(state.tail_text + text)
            k = len(state.tail_ids)
            if tuple(joint[:k]) == state.tail_ids and len(joint) > k:
                return joint[k:]
        ids = self._plain_ids(text)
        if not ids:
            raise ValueError(f"continuation {text!r} has no tokens; pass non-empty text")
        return ids

    def continuation_logprobs(self, state: PromptState,
                              continuations: Sequence[Continuation]) -> list[np.ndarray]:
        """Per-token log-probs (float32) of each continuation after ``state``'s prompt.
        A continuation is text (see ``continuation_ids``) or token ids. All of them run
        in one forward over a trie of their tokens (shared prefixes once), attending to
        the prompt's cached keys and values."""
        return self._score_continuations(state, continuations, ())[0]

    def continuation_states(self, state: PromptState, continuations: Sequence[Continuation],
                            layers: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``continuation_logprobs``, and the model's hidden states at each continuation's
        last token, from the same forward: (len(continuations), len(layers), hidden)
        float32, ``layers`` counted as transformers does (0: the embeddings; -1: the
        last, after the final norm). What a small trained head reads: the state after
        "question, context, span, end of answer" is the model's view of the span as the
        answer. Only backends with ``exposes_states`` have it."""
        if not self.exposes_states:
            raise NotImplementedError(f"{type(self).__name__} does not expose hidden states")
        logprobs, states = self._score_continuations(state, continuations, tuple(layers))
        assert states is not None
        return logprobs, states

    def _score_continuations(self, state: PromptState, continuations: Sequence[Continuation],
                             layers: tuple[int, ...]
                             ) -> tuple[list[np.ndarray], np.ndarray | None]:
        sequences = [self._tokens(state, c) for c in continuations]
        if any(not s for s in sequences):
            raise ValueError("continuations must be non-empty")
        out = [np.empty(len(s), dtype=np.float32) for s in sequences]
        hidden: np.ndarray | None = None
        for chunk in chunks(sequences):
            trie = TokenTrie.build([sequences[i] for i in chunk])
            # Token j's log-prob is read from the distribution after its parent node.
            parents = sorted({trie.parents[n] for path in trie.paths for n in path} - {-1})
            rows = np.empty((0, 0), dtype=np.float32)
            if parents or layers:  # a trie of one-token continuations needs no forward
                lasts = [path[-1] for path in trie.paths]
                rows, states = self._node_forward(state, trie, parents, layers, lasts)
                if layers:
                    if hidden is None:
                        hidden = np.empty((len(sequences), *states.shape[1:]),
                                          dtype=np.float32)
                    hidden[chunk] = states
            row_of = {node: r for r, node in enumerate(parents)}
            for i, path in zip(chunk, trie.paths, strict=True):
                for j, node in enumerate(path):
                    parent = trie.parents[node]
                    dist = state.next_logprobs if parent < 0 else rows[row_of[parent]]
                    out[i][j] = dist[trie.tokens[node]]
        return out, hidden

    def _node_forward(self, state: PromptState, trie: TokenTrie, nodes: Sequence[int],
                      layers: tuple[int, ...], at: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``_node_logprobs`` for ``nodes``, and (len(at), len(layers), hidden) states of
        the trie nodes ``at`` (empty when ``layers`` is)."""
        if layers:
            raise NotImplementedError(f"{type(self).__name__} does not expose hidden states")
        return self._node_logprobs(state, trie, nodes), np.empty((0,), dtype=np.float32)

    def next_logprobs(self, state: PromptState, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(prefixes), vocab) float32 log-probs of the token after each token prefix
        of an answer (``[]``: right after the prompt); what a beam search needs per step."""
        out = np.empty((len(prefixes), len(state.next_logprobs)), dtype=np.float32)
        out[:] = state.next_logprobs
        pending = [i for i, p in enumerate(prefixes) if len(p)]
        sequences = [list(prefixes[i]) for i in pending]
        for chunk in chunks(sequences):
            trie = TokenTrie.build([sequences[i] for i in chunk])
            lasts = sorted({path[-1] for path in trie.paths})
            rows = self._node_logprobs(state, trie, lasts)
            row_of = {node: r for r, node in enumerate(lasts)}
            for i, path in zip(chunk, trie.paths, strict=True):
                out[pending[i]] = rows[row_of[path[-1]]]
        return out

    def end_of_answer_ids(self) -> list[int]:
        """The tokens that end an answer (end of sequence; a chat model's end of turn).
        Scoring a span followed by them asks whether the answer stops right there."""
        raise NotImplementedError(f"{type(self).__name__} does not say where an answer ends")

    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Summed log-likelihood of each option's tokens given ``prompt`` (the prompt is
        run once; see ``prefill``)."""
        state = self.prefill(prompt)
        if not options:
            return []
        ids = [self._option_ids(state, option) for option in options]
        return [float(lp.sum(dtype=np.float64)) for lp in self.continuation_logprobs(state, ids)]

    def _tokens(self, state: PromptState, continuation: Continuation) -> list[int]:
        if isinstance(continuation, str):
            return self.continuation_ids(state, continuation)
        return [int(t) for t in continuation]



class TransformersGenerator(Generator):
    """Everything of a transformers model but its class, prompt format and scoring steps."""

    default_context_length = 2048  # when the model config names no limit

    def __init__(self, name_or_path: str, device: str | None = None,
                 repetition_penalty: float = 1.0, quantization: str = "none",
                 threads: int | None = None) -> None:
        self.model_id = name_or_path
        self._device = device
        self.repetition_penalty = repetition_penalty
        self.quantization = quantization
        self.threads = threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._counter: Tokenizer | None = None
        self._lock = threading.Lock()

    @staticmethod
    @abstractmethod
    def _auto_class() -> Any:
        """The transformers Auto class that loads this kind of model."""

    def _adds_special_tokens(self, text: str) -> bool:
        return True

    # -- shared -----------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        config = self._loaded().config
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return self.default_context_length

    def count_tokens(self, text: str) -> int:
        self._loaded()
        assert self._counter is not None
        return len(self._counter.encode(text, add_special_tokens=self._adds_special_tokens(text)))

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        import torch

        model = self._loaded()
        inputs = self._encode(prompt)
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=self._greedy(max_new_tokens))
        new = output[0, inputs["input_ids"].shape[1]:] if self._echoes_prompt() else output[0]
        return str(self._tokenizer.decode(new, skip_special_tokens=True)).strip()

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        model = self._loaded()
        inputs = self._encode(prompt)
        streamer = TextIteratorStreamer(
            self._tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():  # thread-local, so entered in the thread
                    model.generate(
                        **inputs, generation_config=self._greedy(max_new_tokens), streamer=streamer
                    )
            except BaseException as error:  # handed to the caller below
                failure.append(error)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from stripped(streamer)
        thread.join()
        if failure:
            raise failure[0]

    def _plain_ids(self, text: str) -> list[int]:
        self._loaded()
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        self._loaded()
        encoded = self._tokenizer(prompt, add_special_tokens=self._adds_special_tokens(prompt),
                                  return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        k = min(TAIL_TOKENS, len(ids))
        if k == 0:
            return ids, "", ()
        start = encoded["offset_mapping"][len(ids) - k][0]
        return ids, prompt[start:], tuple(ids[-k:])

    def _echoes_prompt(self) -> bool:
        return not self._loaded().config.is_encoder_decoder

    def _encode(self, text: str) -> dict[str, torch.Tensor]:
        encoded = self._tokenizer(
            text, return_tensors="pt", add_special_tokens=self._adds_special_tokens(text)
        )
        return {k: v.to(self._model.device) for k, v in encoded.items()}

    def end_of_answer_ids(self) -> list[int]:
        eos = self._loaded().generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        if isinstance(eos, list | tuple):  # several end tokens: the first ends a turn
            eos = eos[0]
        if eos is None:
            raise NotImplementedError(f"{self.model_id} has no end-of-sequence token")
        return [int(eos)]

    def _greedy(self, max_new_tokens: int) -> Any:
        from transformers import GenerationConfig

        # Only the model's special-token ids: its own sampling settings must not apply.
        base = self._model.generation_config
        ids = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
        special = {k: getattr(base, k, None) for k in ids}
        if special["pad_token_id"] is None:
            special["pad_token_id"] = self._tokenizer.pad_token_id or special["eos_token_id"]
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=self.repetition_penalty,
            **{k: v for k, v in special.items() if v is not None},
        )

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._load()
            return self._model

    def _load(self) -> None:
        import torch

        resolved = resolve(self.model_id, "generator")
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float32
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            if resolved.gguf_file is not None:
                model, tokenizer = load_gguf(resolved, self._auto_class(), dtype)
            else:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(resolved.path)
                model = self._auto_class().from_pretrained(resolved.path, dtype=dtype)
        except (OSError, ValueError) as error:  # not found, or not a model
            raise load_error(resolved, error) from error
        if model.config.is_encoder_decoder != isinstance(self, Seq2SeqGenerator):
            found = "an encoder-decoder" if model.config.is_encoder_decoder else "a decoder-only"
            raise ModelError(
                f"{self.model_id} is {found} model, not for {type(self).__name__}; "
                "load it with load_generator(), which picks the class from its config"
            )
        model = model.to(device).eval()
        if self.quantization == "int8":
            if device != "cpu":
                raise ModelError(
                    f"int8 quantisation runs on the CPU only, not {device}; "
                    "set generator.device = 'cpu' or generator.quantization = 'none'"
                )
            model = _quantise_int8(model)
        elif self.quantization != "none":
            raise ModelError(f"generator.quantization must be 'none' or 'int8', "
                             f"got {self.quantization!r}")
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # process-wide: torch has no other knob
        self._model = model
        self._tokenizer = tokenizer
        # A private copy for counting: no truncation state, no warnings on long inputs.
        backend = tokenizer.backend_tokenizer
        self._counter = backend.__class__.from_str(backend.to_str())
        self._counter.no_truncation()
        self._counter.no_padding()


class CausalGenerator(TransformersGenerator):
    """A decoder-only model (AutoModelForCausalLM); its chat template when it has one."""

    @staticmethod
    def _auto_class() -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def render(self, instruction: str, user: str) -> str:
        self._loaded()
        if getattr(self._tokenizer, "chat_template", None):
            messages = [
                {"role": "system", "content": instruction},
                {"role": "user", "content": user},
            ]
            return str(
                self._tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            )
        return f"{instruction}\n\n{user}\nAnswer:"

    def _adds_special_tokens(self, text: str) -> bool:
        # A rendered chat template already starts with BOS; don't add a second one.
        bos = self._tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        import torch
        from transformers import DynamicCache

        model = self._loaded()
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True,
                           logits_to_keep=1, **{_cache_argument(model): cache}).logits
            return torch.log_softmax(logits[0, -1].float(), dim=-1).cpu().numpy(), cache

    resumes_prompts = True

    def _resume(self, cache: Any, ids: list[int]) -> tuple[np.ndarray, Any]:
        import torch

        model = self._loaded()
        resumed = _fork(cache)  # positions follow from the cache's length
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True,
                           logits_to_keep=1, **{_cache_argument(model): resumed}).logits
            return torch.log_softmax(logits[0, -1].float(), dim=-1).cpu().numpy(), resumed

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        """All trie nodes in one row after the cached prompt, each at position
        ``len(prompt) + depth`` and attending to the prompt and its own ancestors only
        (a 4D mask): a continuation sees exactly what it would see alone."""
        return self._node_forward(state, trie, nodes, (), ())[0]

    exposes_states = True

    @property
    def hidden_size(self) -> int | None:
        return int(self._loaded().config.hidden_size)

    def _node_forward(self, state: PromptState, trie: TokenTrie, nodes: Sequence[int],
                      layers: tuple[int, ...], at: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        model = self._loaded()
        device = model.device
        n, prompt_len = len(trie.tokens), len(state.ids)
        allowed = np.ones((n, prompt_len + n), dtype=bool)
        allowed[:, prompt_len:] = trie.ancestry()
        dtype = model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(
            torch.from_numpy(~allowed), torch.finfo(dtype).min
        )
        positions = [prompt_len + d for d in trie.depths]
        # logits_to_keep must not be empty (it would keep every row): one spare row.
        keep = list(nodes) or [0]
        with torch.inference_mode():
            output = model(
                input_ids=torch.tensor([trie.tokens], device=device),
                position_ids=torch.tensor([positions], device=device),
                attention_mask=mask[None, None].to(device),
                use_cache=True,
                logits_to_keep=torch.tensor(keep, device=device),
                output_hidden_states=bool(layers),
                **{_cache_argument(model): _fork(state.cache)},
            )
            logprobs = torch.log_softmax(output.logits[0].float(), dim=-1).cpu().numpy()
            logprobs = logprobs[:len(nodes)]
            if not layers:
                return logprobs, np.empty((0,), dtype=np.float32)
            rows = torch.tensor(list(at), device=device)
            states = torch.stack([output.hidden_states[k][0, rows].float() for k in layers],
                                 dim=1)
            return logprobs, states.cpu().numpy()


class Seq2SeqGenerator(TransformersGenerator):
    """An encoder-decoder model (AutoModelForSeq2SeqLM), such as T5 or BART."""

    # T5 has relative positions and no hard limit; 512 is what it was trained on.
    default_context_length = 512

    @staticmethod
    def _auto_class() -> Any:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def render(self, instruction: str, user: str) -> str:
        return f"{instruction}\n\n{user}"

    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        # The answer is the decoder's: nothing of the prompt precedes it.
        self._loaded()
        return self._encode(prompt)["input_ids"][0].tolist(), "", ()

    def _option_ids(self, state: PromptState, option: str) -> list[int]:
        # With its EOS: the model must also say the answer ends there.
        ids = list(self._tokenizer(option)["input_ids"])
        if not self._plain_ids(option):
            raise ValueError(f"continuation {option!r} has no tokens; pass non-empty text")
        return ids

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        import torch

        model = self._loaded()
        input_ids = torch.tensor([ids], device=model.device)
        mask = torch.ones_like(input_ids)
        with torch.inference_mode():
            encoded = model.get_encoder()(input_ids=input_ids, attention_mask=mask)
        cache = (encoded.last_hidden_state, mask)
        return self._decode(cache, [[]])[0], cache

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        prefixes = []
        for node in nodes:
            path = []
            while node >= 0:
                path.append(trie.tokens[node])
                node = trie.parents[node]
            prefixes.append(path[::-1])
        return self._decode(state.cache, prefixes)

    def _decode(self, cache: Any, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        """Decoder log-probs after each prefix: one right-padded row each, the encoder
        output shared (expanded, not copied) across the rows."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        model = self._loaded()
        hidden, mask = cache
        start = model.config.decoder_start_token_id
        pad = model.config.pad_token_id or 0
        width = 1 + max(len(p) for p in prefixes)
        rows = [[start, *p] + [pad] * (width - 1 - len(p)) for p in prefixes]
        n = len(rows)
        with torch.inference_mode():
            logits = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden.expand(n, -1, -1)),
                attention_mask=mask.expand(n, -1),
                decoder_input_ids=torch.tensor(rows, device=hidden.device),
                use_cache=False,
            ).logits
            last = logits[torch.arange(n), torch.tensor([len(p) for p in prefixes])]
            return torch.log_softmax(last.float(), dim=-1).cpu().numpy()


def load_generator(name_or_path: str, device: str | None = None,
                   repetition_penalty: float | None = None, quantization: str = "none",
                   threads: int | None = None) -> Generator:
    """A transformers generator for ``name_or_path`` (see ``models.resolve``); the weights
    load on first use. The class follows the model config: encoder-decoder ->
    Seq2SeqGenerator."""
    if repetition_penalty is None:
        repetition_penalty = GeneratorConfig().repetition_penalty
    resolved = resolve(name_or_path, "generator")
    if resolved.gguf_file is not None:
        # transformers dequantises decoder-only GGUF models; reading the config from the
        # file alone takes seconds, so the check waits for the load.
        return CausalGenerator(name_or_path, device, repetition_penalty, quantization, threads)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolved.path)
    except (OSError, ValueError) as error:  # not found, or not a model
        raise load_error(resolved, error) from error
    cls = Seq2SeqGenerator if config.is_encoder_decoder else CausalGenerator
    return cls(name_or_path, device, repetition_penalty, quantization, threads)


def from_config(cfg: GeneratorConfig) -> Generator:
    """The generator ``cfg`` names, on the backend it names."""
    if cfg.backend == "llamacpp":
        from ragmem.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(cfg.model, repetition_penalty=cfg.repetition_penalty,
                                 threads=cfg.threads)
    if cfg.backend != "torch":
        raise ModelError(f"generator.backend must be 'torch' or 'llamacpp', got {cfg.backend!r}")
    return load_generator(cfg.model, device=cfg.device, repetition_penalty=cfg.repetition_penalty,
                          quantization=cfg.quantization, threads=cfg.threads)


def _quantise_int8(model: Any) -> Any:
    """Linear layers with int8 weights, activations quantised per call (fbgemm/onednn)."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch deprecates the eager-mode API in favour of torchao, which is not installed;
        # the kernels are the same ones, so the warnings say nothing about these results.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def stripped(pieces: Iterator[str]) -> Iterator[str]:
    """``pieces`` of generated text re-cut so they join to the stripped text: trailing
    whitespace is held back until more text follows, leading whitespace dropped."""
    pending, started = "", False
    for piece in pieces:
        text = pending + piece
        if not started:
            text = text.lstrip()
        body = text.rstrip()
        pending = text[len(body):]
        if body:
            started = True
            yield body


def _cache_argument(model: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; take what the model has."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _fork(cache: Any) -> Any:
    """A cache that can grow without touching ``cache``: its layers append by rebinding
    (``torch.cat``), so copies of the layer objects share the prompt's tensors unchanged."""
    fork = copy.copy(cache)
    fork.layers = [copy.copy(layer) for layer in cache.layers]
    return fork
