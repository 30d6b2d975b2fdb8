"""The generator without PyTorch: a Llama-architecture causal model (the packaged SmolLM2)
run by NumPy on the CPU, its tokenizer by ``tokenizers`` and its chat template by Jinja.

    >>> generator = NumpyLlamaGenerator("SmolLM2-135M-Instruct")            # doctest: +SKIP
    >>> state = generator.prefill(generator.render("Answer briefly.", "2 + 2?"))  # doctest: +SKIP
    >>> generator.continuation_logprobs(state, ["4", "5"])                  # doctest: +SKIP
    [array([-0.9], dtype=float32), array([-3.2], dtype=float32)]

Why: a question asked from the command line pays for every import. torch and transformers
take seconds to import; this forward pass is ~120 lines of NumPy over the same fp32
weights (the GGUF's safetensors cache, ``gguf_cache``; converting it the first time still
needs torch, once, as the ONNX export of the embedder does). Same interface as the torch
backend: a ``Generator`` and a ``Scorer`` with hidden states (``continuation_states``),
the trie scored in one forward over the prompt's cached keys and values. Its log-probs
match transformers' to float32 rounding (``tests/generation/test_numpy_llama.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmem.errors import ModelError
from ragmem.generation.base import TAIL_TOKENS, PromptState, greedy_token, stripped
from ragmem.generation.llama_forward import LlamaWeights, blas_threads, forward, log_softmax
from ragmem.generation.scoring import TokenScorer
from ragmem.generation.token_trie import TokenTrie
from ragmem.models import ResolvedModel, load_error, resolve

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def numpy_folder(resolved: ResolvedModel) -> Path:
    """The folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json`` for
    ``resolved``: a GGUF model's safetensors cache (made on first use, with torch), or
    the model's own folder."""
    if resolved.gguf_file is not None:
        from ragmem.generation.gguf_cache import cached_folder

        return cached_folder(resolved)
    return Path(resolved.path)


def runs_on_numpy(resolved: ResolvedModel) -> bool:
    """Whether this backend can run ``resolved``: a Llama-architecture causal model with
    plain RoPE and safetensors weights beside a ``tokenizer.json``. A GGUF model is
    taken as one until its cache says otherwise (the packaged ones are Llamas)."""
    if resolved.gguf_file is not None:
        return True
    folder = Path(resolved.path)
    if not ((folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
            and (folder / "model.safetensors").is_file()):
        return False
    return _unsupported(json.loads((folder / "config.json").read_text("utf-8"))) is None


def _unsupported(config: dict[str, Any]) -> str | None:
    if config.get("model_type") != "llama":
        return f"model_type {config.get('model_type')!r}"
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        return f"rope {rope.get('rope_type', rope.get('type'))!r}"
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "biases"
    if config.get("hidden_act", "silu") != "silu":
        return f"activation {config.get('hidden_act')!r}"
    return None


class NumpyLlamaGenerator(TokenScorer):
    """A Llama causal model on NumPy (fp32, CPU); weights load on first use."""

    resumes_prompts = True

    def __init__(self, name_or_path: str, repetition_penalty: float = 1.0,
                 threads: int | None = None) -> None:
        self.model_id = name_or_path
        self.repetition_penalty = repetition_penalty
        # One BLAS thread unless asked: OpenBLAS's spinning threads cost 7x the time on a
        # busy machine (see llama_forward.blas_threads).
        self.threads = threads or 1
        self._weights: LlamaWeights | None = None
        self._config: dict[str, Any] | None = None
        self._folder: Path | None = None
        self._tokenizer: Tokenizer | None = None
        self._template: Any = None
        self._special: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- the shared interface ------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return int(self._config_of().get("max_position_embeddings") or 2048)

    def hidden_size(self) -> int | None:
        return int(self._config_of()["hidden_size"])

    def render(self, instruction: str, user: str) -> str:
        self._tokenized()
        messages = [{"role": "system", "content": instruction}, {"role": "user", "content": user}]
        if self._template is None:
            return f"{instruction}\n\n{user}\nAnswer:"
        return str(self._template.render(messages=messages, add_generation_prompt=True,
                                         **self._special))

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def end_of_answer_ids(self) -> list[int]:
        return [self._eos_ids()[0]]

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        return "".join(self.stream(prompt, max_new_tokens))

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        return stripped(self._pieces(prompt, max_new_tokens))

    # -- scoring steps -----------------------------------------------------------------
    def _plain_ids(self, text: str) -> list[int]:
        return list(self._tokenized().encode(text, add_special_tokens=False).ids)

    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        encoded = self._tokenized().encode(prompt, add_special_tokens=self._adds_special(prompt))
        ids = list(encoded.ids)
        k = min(TAIL_TOKENS, len(ids))
        if k == 0:
            return ids, "", ()
        start = encoded.offsets[len(ids) - k][0]
        return ids, prompt[start:], tuple(ids[-k:])

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        return self._resume(None, ids)

    def _resume(self, cache: Any, ids: list[int]) -> tuple[np.ndarray, Any]:
        logits, resumed = self._run(cache, ids)
        return log_softmax(logits), resumed

    def _run(self, cache: Any, ids: list[int]) -> tuple[np.ndarray, Any]:
        """The logits after ``ids`` run causally after ``cache`` (None: from the start),
        and the cache with them; ``cache`` itself is left as it was."""
        past = 0 if cache is None else cache[0][0].shape[1]
        n = len(ids)
        allowed = np.ones((n, past + n), dtype=bool)
        allowed[:, past:] = np.tril(np.ones((n, n), dtype=bool))
        weights = self._loaded()
        with blas_threads(self.threads):
            out = forward(weights, np.asarray(ids), np.arange(past, past + n), allowed, cache,
                          logit_rows=[n - 1])
        return out.logits[0], out.cache

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        return self._node_forward(state, trie, nodes, (), ())[0]

    def _node_forward(self, state: PromptState, trie: TokenTrie, nodes: Sequence[int],
                      layers: tuple[int, ...], at: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Every trie node in one forward after the cached prompt, at position
        ``len(prompt) + depth``, attending to the prompt and its own ancestors only."""
        n, prompt_len = len(trie.tokens), len(state.ids)
        allowed = np.ones((n, prompt_len + n), dtype=bool)
        allowed[:, prompt_len:] = trie.ancestry()
        positions = prompt_len + np.asarray(trie.depths)
        weights = self._loaded()
        with blas_threads(self.threads):
            out = forward(weights, np.asarray(trie.tokens), positions, allowed, state.cache,
                          logit_rows=list(nodes), layers=layers, state_rows=list(at))
        return out.logprobs, out.states

    # -- loading -----------------------------------------------------------------------
    def _config_of(self) -> dict[str, Any]:
        with self._lock:
            if self._config is None:
                resolved = resolve(self.model_id, "generator")
                try:
                    self._folder = numpy_folder(resolved)
                    config = json.loads((self._folder / "config.json").read_text("utf-8"))
                except (OSError, ValueError) as error:
                    raise load_error(resolved, error) from error
                reason = _unsupported(config)
                if reason is not None:
                    raise ModelError(f"{self.model_id} ({reason}) does not run on the numpy "
                                     "generator, which takes Llama models; set "
                                     "RAGMEM_GENERATOR_BACKEND=torch")
                self._config = config
            return self._config

    def _tokenized(self) -> Tokenizer:
        config = self._config_of()
        with self._lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                assert self._folder is not None
                settings = _json(self._folder / "tokenizer_config.json")
                self._special = {k: v for k, v in settings.items()
                                 if k.endswith("_token") and isinstance(v, str)}
                template = settings.get("chat_template")
                if (self._folder / "chat_template.jinja").is_file():
                    template = (self._folder / "chat_template.jinja").read_text("utf-8")
                self._template = _jinja(template) if template else None
                generation = _json(self._folder / "generation_config.json")
                eos = generation.get("eos_token_id", config.get("eos_token_id"))
                self._eos = [int(e) for e in (eos if isinstance(eos, list) else [eos])
                             if e is not None]
                self._tokenizer = Tokenizer.from_file(str(self._folder / "tokenizer.json"))
                self._tokenizer.no_truncation()
                self._tokenizer.no_padding()
            return self._tokenizer

    def _loaded(self) -> LlamaWeights:
        config = self._config_of()
        with self._lock:
            if self._weights is None:
                assert self._folder is not None
                self._weights = LlamaWeights.load(self._folder / "model.safetensors", config)
            return self._weights

    def _eos_ids(self) -> list[int]:
        self._tokenized()
        if not self._eos:
            raise NotImplementedError(f"{self.model_id} has no end-of-sequence token")
        return self._eos

    def _adds_special(self, text: str) -> bool:
        bos = self._special.get("bos_token")
        return not (bos and text.startswith(bos))

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenized().encode(text, add_special_tokens=self._adds_special(text)).ids)

    def _pieces(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        """Greedy decoding with transformers' repetition penalty, text as it is made."""
        ids = self._encode(prompt)
        tokenizer = self._tokenized()
        stop = set(self._eos_ids())
        logits, cache = self._run(None, ids)
        seen = set(ids)
        made: list[int] = []
        emitted = 0
        for step in range(max_new_tokens):
            token = greedy_token(logits, seen, self.repetition_penalty)
            if token in stop:
                break
            made.append(token)
            seen.add(token)
            text = tokenizer.decode(made, skip_special_tokens=True)
            # A character split across tokens decodes to U+FFFD until its last byte comes.
            if not text.endswith("\ufffd") and len(text) > emitted:
                yield text[emitted:]
                emitted = len(text)
            if step + 1 < max_new_tokens:
                logits, cache = self._run(cache, [token])
        tail = tokenizer.decode(made, skip_special_tokens=True)
        if len(tail) > emitted:
            yield tail[emitted:]


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text("utf-8"))
    return data if isinstance(data, dict) else {}


def _jinja(template: str) -> Any:
    """The chat template compiled as transformers compiles it (sandboxed, trimmed blocks)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ModelError(f"the chat template refused the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, indent=indent,
                                                                    ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


__all__ = ["NumpyLlamaGenerator", "log_softmax", "numpy_folder", "runs_on_numpy"]
