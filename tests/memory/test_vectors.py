"""Approximate indexes through LongTermMemory: recall against exact search, the automatic
flat -> IVF switch, and user factories (HNSW cannot delete in FAISS: rebuilt on delete)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmem.config import IndexConfig
from ragmem.memory import LongTermMemory
from ragmem.memory.faiss.vectors import default_factory
from ragmem.types import Document, Sentence, Window

DIM = 64
RECALL_FLOOR = 0.9  # recall@10 vs exact, IVF at the default nprobe, clustered data


def clustered(n: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random centres (real embeddings clump; uniform noise does not)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vecs = centres[rng.integers(0, n_clusters, size=n)]
    vecs = vecs + rng.normal(scale=0.08, size=(n, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), centres


def doc_rows(doc_id: str, vectors: np.ndarray) -> tuple[Document, list[Sentence],
                                                         list[Window], np.ndarray]:
    sentences, windows, pos = [], [], 0
    for i in range(len(vectors)):
        text = f"Window {i} of {doc_id}."
        sentences.append(Sentence(doc_id, i, pos, pos + len(text), text))
        windows.append(Window(doc_id, i, i, i, pos, pos + len(text), text, 6))
        pos += len(text) + 1
    body = " ".join(s.text for s in sentences)
    return Document(doc_id, f"/src/{doc_id}", body, content_hash=doc_id), sentences, windows, \
        vectors


def write(memory: LongTermMemory, vectors: np.ndarray, per_doc: int, first: int = 0) -> None:
    with memory.writer() as w:
        for i in range(0, len(vectors), per_doc):
            w.add(*doc_rows(f"d{first + i // per_doc:04d}", vectors[i:i + per_doc]))


def exact_top_k(memory: LongTermMemory, queries: np.ndarray, k: int) -> np.ndarray:
    ids, vecs = (np.concatenate(x) for x in zip(*memory.docstore.iter_vectors(), strict=True))
    order = np.argsort(-(queries @ vecs.T), axis=1, kind="stable")[:, :k]
    return ids[order]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t)
                          for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))


def assert_in_step(memory: LongTermMemory) -> None:
    assert np.array_equal(np.sort(memory.vectors.ids()), memory.docstore.window_ids())


def test_ivf_recall_at_10_above_floor(tmp_path: Path) -> None:
    vectors, centres = clustered(20_000, 200, seed=0)
    config = IndexConfig(factory="IVF128,SQ8", approximate_from=1_000, use_gpu=False)
    memory = LongTermMemory.create(tmp_path / "i", embedder="t", dim=DIM, chunking={},
                                   config=config)
    write(memory, vectors, per_doc=100)  # the first write into a new, untrained IVF
    assert memory.manifest.index_factory == "IVF128,SQ8"
    rng = np.random.default_rng(1)
    queries = centres[rng.integers(0, len(centres), 200)]
    queries = queries + rng.normal(scale=0.05, size=queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, found = memory.vectors.search(queries, 10)
    assert memory.vectors.nprobe == IndexConfig().nprobe
    assert recall(found, exact_top_k(memory, queries, 10)) >= RECALL_FLOOR
    memory.close()
    reopened = LongTermMemory.open(tmp_path / "i", config=config)
    assert reopened.vectors.ntotal == 20_000
    assert_in_step(reopened)


def test_flat_switches_to_ivf_past_threshold_and_survives_delete(tmp_path: Path) -> None:
    vectors, _ = clustered(4_000, 40, seed=2)
    config = IndexConfig(approximate_from=3_000, use_gpu=False)
    memory = LongTermMemory.create(tmp_path / "i", embedder="t", dim=DIM, chunking={},
                                   config=config)
    write(memory, vectors[:2_000], per_doc=50)
    assert memory.manifest.index_factory == "IDMap2,Flat"
    queries = vectors[:2_000:97]  # stored vectors: window 97*i + 1 is query i's own
    own = [97 * i + 1 for i in range(len(queries))]  # window ids start at 1
    assert [h[0].window_id for h in memory.search(queries, 10)] == own

    write(memory, vectors[2_000:], per_doc=50, first=40)
    assert memory.manifest.index_factory == default_factory(4_000, 3_000)
    assert memory.manifest.index_factory.startswith("IVF")
    hits = memory.search(queries, 10)
    # SQ8 rounds scores, so a near-tie may come first; the window itself stays in the top 10.
    assert all(w in {h.window_id for h in row} for w, row in zip(own, hits, strict=True))
    assert recall(np.array([[x.window_id for x in h] for h in hits]),
                  exact_top_k(memory, queries, 10)) >= RECALL_FLOOR
    assert_in_step(memory)

    gone = {h.window_id for h in memory.search(queries[:1], 1)[0]}
    doc_id = memory.search(queries[:1], 1)[0][0].doc_id
    with memory.writer() as w:
        assert w.remove(doc_id) == 50
    memory.close()
    reopened = LongTermMemory.open(tmp_path / "i", config=config)
    assert reopened.manifest.index_factory.startswith("IVF")
    assert reopened.vectors.ntotal == 3_950
    assert all(h.doc_id != doc_id and h.window_id not in gone
               for h in reopened.search(queries[:1], 10)[0])
    assert_in_step(reopened)


@pytest.mark.parametrize("factory", ["HNSW16", "IVF16,Flat"])
def test_user_factory_supports_delete(tmp_path: Path, factory: str) -> None:
    vectors, _ = clustered(1_500, 15, seed=3)
    config = IndexConfig(factory=factory, use_gpu=False)
    memory = LongTermMemory.create(tmp_path / "i", embedder="t", dim=DIM, chunking={},
                                   config=config)
    write(memory, vectors, per_doc=50)
    assert memory.manifest.index_factory == factory
    queries = vectors[::50]
    assert [h[0].doc_id for h in memory.search(queries, 1)] == \
        [f"d{i:04d}" for i in range(30)]
    with memory.writer() as w:  # HNSW cannot remove_ids: the store rebuilds it
        w.remove("d0003")
    assert all(h.doc_id != "d0003" for row in memory.search(queries, 10) for h in row)
    assert_in_step(memory)
    memory.close()
    reopened = LongTermMemory.open(tmp_path / "i", config=config)
    assert reopened.vectors.ntotal == 1_450
    assert all(h.doc_id != "d0003" for row in reopened.search(queries, 10) for h in row)
    assert_in_step(reopened)
