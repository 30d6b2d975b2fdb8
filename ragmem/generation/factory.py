"""The generator a name or a config asks for, on the backend it asks for. Backends are
imported here when asked for, and import nothing from this module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragmem.config import GeneratorConfig
from ragmem.errors import ModelError
from ragmem.generation.base import Generator
from ragmem.models import load_error, resolve

if TYPE_CHECKING:
    from ragmem.generation.transformers_model import TransformersGenerator

BACKENDS = ("auto", "torch", "numpy", "llamacpp")


def load_generator(name_or_path: str, device: str | None = None,
                   repetition_penalty: float | None = None, quantization: str = "none",
                   threads: int | None = None) -> TransformersGenerator:
    """A transformers generator for ``name_or_path`` (see ``models.resolve``); the weights
    load on first use. The class follows the model config: encoder-decoder ->
    Seq2SeqGenerator."""
    from ragmem.generation.causal import CausalGenerator
    from ragmem.generation.seq2seq import Seq2SeqGenerator

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
    """The generator ``cfg`` names, on the backend it names (``auto``: see ``backend_for``)."""
    backend = backend_for(cfg)
    if backend == "llamacpp":
        from ragmem.generation.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(cfg.model, repetition_penalty=cfg.repetition_penalty,
                                 threads=cfg.threads)
    if backend == "numpy":
        from ragmem.generation.numpy_llama import NumpyLlamaGenerator

        return NumpyLlamaGenerator(cfg.model, repetition_penalty=cfg.repetition_penalty,
                                   threads=cfg.threads)
    return load_generator(cfg.model, device=cfg.device, repetition_penalty=cfg.repetition_penalty,
                          quantization=cfg.quantization, threads=cfg.threads)


def backend_for(cfg: GeneratorConfig) -> str:
    """The backend ``cfg`` runs on. ``auto`` is ``numpy`` for a Llama model on the CPU
    without quantization (no torch import: a question from the command line starts
    seconds sooner), else ``torch``."""
    if cfg.backend not in BACKENDS:
        raise ModelError(f"generator.backend must be one of {', '.join(map(repr, BACKENDS))}, "
                         f"got {cfg.backend!r}")
    if cfg.backend != "auto":
        return cfg.backend
    from ragmem.embedding.base import cuda_available
    from ragmem.generation.numpy_llama import runs_on_numpy

    on_cpu = cfg.device == "cpu" or (cfg.device is None and not cuda_available())
    if not on_cpu or cfg.quantization != "none":
        return "torch"
    return "numpy" if runs_on_numpy(resolve(cfg.model, "generator")) else "torch"
