"""ragmem's chunking tests with langchain's recursive splitter as the over-long-sentence
cutter (see splitters.py). Not part of the suite (it lives outside tests/); run it with

    python -m pytest eval/bench/langchain_chunking_test.py -q
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "eval" / "bench")]

from splitters import langchain_cut  # noqa: E402

import ragmem.chunking  # noqa: E402
from tests.test_chunking import *  # noqa: E402,F401,F403


@pytest.fixture(autouse=True)
def _langchain_cutter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ragmem.chunking, "_cut_to_fit", langchain_cut)
