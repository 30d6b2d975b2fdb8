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

import json
import logging
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmem.config import GeneratorConfig, cache_home
from ragmem.errors import ModelError
from ragmem.models import ResolvedModel, load_error, resolve

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

class Generator(ABC):
    """Everything but the model class, the prompt format and option scoring is shared."""

    default_context_length = 2048  # when the model config names no limit

    def __init__(self, name_or_path: str, device: str | None = None,
                 repetition_penalty: float = 1.0) -> None:
        self.model_id = name_or_path
        self._device = device
        self.repetition_penalty = repetition_penalty
        self._model: Any = None
        self._tokenizer: Any = None
        self._counter: Tokenizer | None = None
        self._lock = threading.Lock()

    # -- what subclasses decide -------------------------------------------------------
    @staticmethod
    @abstractmethod
    def _auto_class() -> Any:
        """The transformers Auto class that loads this kind of model."""

    @abstractmethod
    def render(self, instruction: str, user: str) -> str:
        """The prompt string for a system ``instruction`` and a ``user`` message."""

    @abstractmethod
    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Summed log-likelihood of each option's tokens given ``prompt``."""

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
        """Tokens the model sees for ``text``, as ``generate`` would encode it."""
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
        """The text of ``generate`` in pieces: ``"".join(stream(p, n)) == generate(p, n)``."""
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
        # Hold back trailing whitespace until more text follows, and drop leading
        # whitespace, so the pieces join to exactly what `generate` strips to.
        pending, started = "", False
        for piece in streamer:
            text = pending + piece
            if not started:
                text = text.lstrip()
            body = text.rstrip()
            pending = text[len(body):]
            if body:
                started = True
                yield body
        thread.join()
        if failure:
            raise failure[0]

    def _echoes_prompt(self) -> bool:
        return not self._loaded().config.is_encoder_decoder

    def _encode(self, text: str) -> dict[str, torch.Tensor]:
        encoded = self._tokenizer(
            text, return_tensors="pt", add_special_tokens=self._adds_special_tokens(text)
        )
        return {k: v.to(self._model.device) for k, v in encoded.items()}

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
                model, tokenizer = _load_gguf(resolved, self._auto_class(), dtype)
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
        self._model = model.to(device).eval()
        self._tokenizer = tokenizer
        # A private copy for counting: no truncation state, no warnings on long inputs.
        backend = tokenizer.backend_tokenizer
        self._counter = backend.__class__.from_str(backend.to_str())
        self._counter.no_truncation()
        self._counter.no_padding()


class CausalGenerator(Generator):
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

    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Log-likelihood of each option as a continuation of ``prompt``. Prompt and
        option are encoded apart and joined, so every option sees the same prompt tokens;
        options are batched, right-padded, and only their positions' logits computed."""
        import torch

        model = self._loaded()
        prompt_ids = self._encode(prompt)["input_ids"][0].tolist()
        if not prompt_ids:
            raise ValueError("score_options needs a non-empty prompt")
        option_ids = [self._option_ids(option) for option in options]
        if not option_ids:
            return []
        width = max(len(ids) for ids in option_ids)
        pad = self._tokenizer.pad_token_id or 0
        rows = [prompt_ids + ids + [pad] * (width - len(ids)) for ids in option_ids]
        mask = [[1] * (len(prompt_ids) + len(ids)) + [0] * (width - len(ids)) for ids in option_ids]
        device = model.device
        with torch.inference_mode():
            logits = model(
                input_ids=torch.tensor(rows, device=device),
                attention_mask=torch.tensor(mask, device=device),
                logits_to_keep=width + 1,
            ).logits
            # logits[:, j] predicts option token j (position len(prompt) + j).
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            targets = torch.tensor([ids + [pad] * (width - len(ids)) for ids in option_ids])
            picked = logprobs.gather(-1, targets.to(device)[..., None])[..., 0]
            keep = torch.tensor(mask, device=device)[:, len(prompt_ids):].bool()
            return [float(s) for s in (picked * keep).sum(dim=1)]

    def _option_ids(self, option: str) -> list[int]:
        ids = self._tokenizer(option, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"option {option!r} has no tokens; options must be non-empty")
        return list(ids)


class Seq2SeqGenerator(Generator):
    """An encoder-decoder model (AutoModelForSeq2SeqLM), such as T5 or BART."""

    # T5 has relative positions and no hard limit; 512 is what it was trained on.
    default_context_length = 512

    @staticmethod
    def _auto_class() -> Any:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def render(self, instruction: str, user: str) -> str:
        return f"{instruction}\n\n{user}"

    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Log-likelihood of each option as the decoder's output, its EOS included (the
        model must also say the answer ends there)."""
        import torch

        model = self._loaded()
        if not options:
            return []
        encoded = self._encode(prompt)
        labels = self._tokenizer(list(options), padding=True, return_tensors="pt")
        keep = labels["attention_mask"].to(model.device).bool()
        targets = labels["input_ids"].to(model.device).masked_fill(~keep, -100)
        n = len(options)
        with torch.inference_mode():
            logits = model(
                input_ids=encoded["input_ids"].expand(n, -1),
                attention_mask=encoded["attention_mask"].expand(n, -1),
                labels=targets,
            ).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            picked = logprobs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
            return [float(s) for s in (picked * keep).sum(dim=1)]


def load_generator(name_or_path: str, device: str | None = None,
                   repetition_penalty: float | None = None) -> Generator:
    """A generator for ``name_or_path`` (see ``models.resolve``); the weights load on first
    use. The class follows the model config: encoder-decoder -> Seq2SeqGenerator."""
    if repetition_penalty is None:
        repetition_penalty = GeneratorConfig().repetition_penalty
    resolved = resolve(name_or_path, "generator")
    if resolved.gguf_file is not None:
        # transformers dequantises decoder-only GGUF models; reading the config from the
        # file alone takes seconds, so the check waits for the load.
        return CausalGenerator(name_or_path, device, repetition_penalty)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolved.path)
    except (OSError, ValueError) as error:  # not found, or not a model
        raise load_error(resolved, error) from error
    cls = Seq2SeqGenerator if config.is_encoder_decoder else CausalGenerator
    return cls(name_or_path, device, repetition_penalty)


def from_config(cfg: GeneratorConfig) -> Generator:
    return load_generator(cfg.model, device=cfg.device,
                          repetition_penalty=cfg.repetition_penalty)


# -- the GGUF -> safetensors cache ----------------------------------------------------


def _load_gguf(resolved: ResolvedModel, auto_class: Any, dtype: Any) -> tuple[Any, Any]:
    """Model and tokenizer of a GGUF model, from the cache, converting on first use."""
    from transformers import AutoTokenizer

    assert resolved.gguf_file is not None
    source = Path(resolved.path) / resolved.gguf_file
    stat = source.stat()
    stamp = {"gguf": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cached = cache_home() / "models" / resolved.name
    if _stamp(cached) == stamp:
        return (
            auto_class.from_pretrained(cached, dtype=dtype),
            AutoTokenizer.from_pretrained(cached),
        )
    model, tokenizer = _dequantise(resolved.path, resolved.gguf_file, auto_class)
    _save_atomically(model, tokenizer, stamp, cached)
    return model.to(dtype), tokenizer


def _dequantise(directory: str, gguf_file: str, auto_class: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    # dequantize=True: plain float32 tensors that save_pretrained can write, whether or
    # not GGUF matmul kernels are installed.
    model = auto_class.from_pretrained(
        directory,
        gguf_file=gguf_file,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    return model, tokenizer


def _stamp(cached: Path) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = json.loads((cached / "ragmem-source.json").read_text())
        return result
    except (OSError, ValueError):
        return None


def _save_atomically(model: Any, tokenizer: Any, stamp: dict[str, Any], cached: Path) -> None:
    """Write to a temp dir beside ``cached``, then rename: a reader never sees half a cache,
    and of two processes converting at once the first rename wins."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ragmem-source.json").write_text(json.dumps(stamp))
        if cached.exists():  # stale: the package's GGUF changed
            shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    except OSError as error:  # another process won the rename, or no write access
        if not _stamp(cached):
            logger.warning("could not cache %s at %s (%s)", model.name_or_path, cached, error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
