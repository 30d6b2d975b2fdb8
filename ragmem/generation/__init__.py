"""Prompt -> text, and where the model can, scores of what could follow a prompt.

    >>> generator = load_generator("SmolLM2-135M-Instruct")            # doctest: +SKIP
    >>> prompt = generator.render("Answer briefly.", "What is 2 + 2?")  # doctest: +SKIP
    >>> generator.generate(prompt, max_new_tokens=8)                    # doctest: +SKIP
    '2 + 2 = 4.'

Two capabilities (``base``): ``Generator`` writes, ``Scorer`` scores continuations;
``scorer_of`` says whether a model can score. Decoding is greedy, so the same prompt
always gives the same text. Backends, imported when asked for (``factory``):
``transformers_model`` (transformers causal and seq2seq models, the default) and
``llamacpp`` (the GGUF through llama.cpp, an optional extra); both score through
``scoring.TokenScorer``.
"""

from ragmem.generation.base import (
    TAIL_TOKENS,
    Continuation,
    Generator,
    PromptState,
    Scorer,
    scorer_of,
    stripped,
)
from ragmem.generation.factory import from_config, load_generator

__all__ = ["TAIL_TOKENS", "Continuation", "Generator", "PromptState", "Scorer",
           "from_config", "load_generator", "scorer_of", "stripped"]
