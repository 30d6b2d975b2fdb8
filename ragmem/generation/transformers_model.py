"""The torch backend of generation: transformers models, loaded on first use.

    >>> generator = CausalGenerator("SmolLM2-135M-Instruct")   # doctest: +SKIP

``CausalGenerator`` (``causal``) runs decoder-only models (AutoModelForCausalLM) with
their chat template, ``Seq2SeqGenerator`` (``seq2seq``) encoder-decoder ones
(AutoModelForSeq2SeqLM: T5, BART); what they share is here.
``ragmem.generation.load_generator`` picks the class from the model's config. A packaged
GGUF model is dequantised once and kept as safetensors under ``cache_home() / "models"``:
reading the GGUF takes tens of seconds, the cache well under one.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ragmem.errors import ModelError
from ragmem.generation.base import TAIL_TOKENS, stripped
from ragmem.generation.gguf_cache import load_gguf
from ragmem.generation.scoring import TokenScorer
from ragmem.models import load_error, resolve

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer


class TransformersGenerator(TokenScorer):
    """Everything of a transformers model but its class, prompt format and scoring
    steps: a ``Generator``, and a ``Scorer`` through ``TokenScorer``."""

    default_context_length = 2048  # when the model config names no limit
    encoder_decoder = False  # the kind of model the class runs

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
        if model.config.is_encoder_decoder != self.encoder_decoder:
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
