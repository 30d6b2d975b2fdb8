"""`ragmem ask` with the default config answers without importing torch, transformers or
sentence-transformers (issue 25): the embedder runs on ONNX Runtime, the generator that
scores spans on NumPy, the reader on ONNX Runtime. A fresh process, as a user runs it,
reports its own modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragmem.config import DEFAULT_EMBEDDER, DEFAULT_GENERATOR
from ragmem.embedding import onnx_model
from ragmem.generation.numpy_llama import numpy_folder
from ragmem.models import require_local, resolve
from ragmem.reading import Reader

ROOT = Path(__file__).resolve().parents[1]
ASK = """
import json, sys
from ragmem.cli import main
sys.argv = ["ragmem", "ask", sys.argv[1], sys.argv[2]]
code = 0
try:
    main()
except SystemExit as done:
    code = done.code
heavy = ["torch", "transformers", "sentence_transformers"]
print(json.dumps({"exit": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


@pytest.mark.slow
def test_ask_with_the_default_config_imports_no_torch(tmp_path: Path) -> None:
    # The one-time conversions (ONNX export, GGUF -> safetensors) need torch; a user's
    # first `ragmem index` and first question make them. Made here, in the test's cache.
    onnx_model(require_local(DEFAULT_EMBEDDER, "embedder"))
    numpy_folder(resolve(DEFAULT_GENERATOR, "generator"))
    Reader().schema  # noqa: B018 (the reader's ONNX export, made by a first question)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    index = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "ragmem.cli", "index", str(ROOT / "ragmem/demo/corpus"),
                    "--index", str(index)], check=True, env=env, capture_output=True)
    done = subprocess.run(
        [sys.executable, "-c", ASK, str(index),
         "Which bank's cellar were the robbers tunnelling into?"],
        env=env, capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exit"] in (0, None), done.stderr
    assert report["heavy"] == [], f"ragmem ask imported {report['heavy']}"
    assert "cellar" in done.stdout or "Not found" in done.stdout  # it answered
