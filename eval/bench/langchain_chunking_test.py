"""ragmem's chunking tests with langchain's recursive splitter as the over-long-sentence
cutter (see splitters.py). Not part of the suite (it lives outside tests/); run it from
the repository root with

    python -m pytest eval/bench/langchain_chunking_test.py -q
"""

from __future__ import annotations

import pytest

import ragmem.chunking
from eval.bench.splitters import langchain_cut
from tests.test_chunking import *  # noqa: F401,F403


@pytest.fixture(autouse=True)
def _langchain_cutter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ragmem.chunking, "_cut_to_fit", langchain_cut)
