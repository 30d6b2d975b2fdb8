"""A synthetic corpus for scale benchmarks: real docstore rows, cheap structured vectors.

Text: documents of 50-200 windows; each window spans two sentences and overlaps the
next by one (what ``chunk_document`` does with ``overlap_sentences=1``); sentences are
drawn from a pool built from a made-up word list, so rows, offsets and text are real.

Vectors (dim 384, L2-normalised) are a mixture of clusters, not uniform noise. Real
sentence embeddings sit near a low-dimensional surface with topical clumps; uniform
random vectors in 384 dims have no near neighbours at all, the worst case for an IVF
index, and would understate its recall. Here each cluster has a centre and its own
24-dimensional subspace; a window is ``centre + subspace offset + small isotropic
noise``; cluster sizes are skewed (log-normal weights); a document mostly stays on its
own topic (60% of its windows); 5% of windows are pure noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ragmem.types import Document, Sentence, Window

SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "or", "an", "dri", "pe", "zo",
             "qui", "ban", "th", "el", "mor", "is", "ga", "nu", "fer", "yo", "lin", "ces"]


@dataclass(frozen=True)
class Clusters:
    centres: np.ndarray  # (n_clusters, dim), unit norm
    bases: np.ndarray  # (n_clusters, dim, sub_dim), orthonormal columns
    weights: np.ndarray  # (n_clusters,), sums to 1
    spread: float = 0.12  # per subspace direction
    noise: float = 0.015  # per dimension, isotropic

    @classmethod
    def make(cls, n_clusters: int = 2000, dim: int = 384, sub_dim: int = 24,
             seed: int = 0) -> Clusters:
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        raw = rng.normal(size=(n_clusters, dim, sub_dim)).astype(np.float32)
        bases = np.linalg.qr(raw)[0].astype(np.float32)
        weights = rng.lognormal(sigma=1.0, size=n_clusters)
        return cls(centres, bases, weights / weights.sum())

    def sample(self, cluster: np.ndarray, rng: np.random.Generator,
               spread_scale: float = 1.0) -> np.ndarray:
        """One unit vector per entry of ``cluster``; -1 means pure noise."""
        n, dim = len(cluster), self.centres.shape[1]
        out = rng.normal(scale=self.noise, size=(n, dim)).astype(np.float32)
        real = np.flatnonzero(cluster >= 0)
        for part in np.array_split(real, max(1, len(real) // 2048)):
            c = cluster[part]
            z = rng.normal(scale=self.spread * spread_scale,
                           size=(len(part), self.bases.shape[2])).astype(np.float32)
            out[part] += self.centres[c] + np.einsum("nds,ns->nd", self.bases[c], z)
        noise = np.flatnonzero(cluster < 0)
        out[noise] = rng.normal(size=(len(noise), dim))
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def queries(self, n: int, seed: int) -> np.ndarray:
        """Queries near cluster centres (half the usual spread), clusters picked by size."""
        rng = np.random.default_rng(seed)
        cluster = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.sample(cluster, rng, spread_scale=0.5)


class Corpus:
    """Deterministic documents: ``batch(first, n)`` always returns the same docs."""

    def __init__(self, clusters: Clusters, seed: int = 0, pool: int = 20_000) -> None:
        self.clusters = clusters
        self.seed = seed
        rng = np.random.default_rng(seed)
        words = ["".join(rng.choice(SYLLABLES, size=rng.integers(1, 4)))
                 for _ in range(3000)]
        self.sentences = []
        for _ in range(pool):
            ws = rng.choice(words, size=rng.integers(6, 22))
            self.sentences.append(" ".join(ws).capitalize() + ".")

    def document(self, number: int, version: int = 0) -> tuple[Document, list[Sentence],
                                                               list[Window], np.ndarray]:
        rng = np.random.default_rng([self.seed, number, version])
        n_windows = int(rng.integers(50, 201))
        picks = rng.integers(0, len(self.sentences), size=n_windows + 1)
        doc_id = f"doc-{number:07d}.txt"
        texts = [self.sentences[i] for i in picks]
        sentences, pos = [], 0
        for i, text in enumerate(texts):
            sentences.append(Sentence(doc_id, i, pos, pos + len(text), text))
            pos += len(text) + 1
        body = " ".join(texts)
        windows = [Window(doc_id, i, i, i + 1, sentences[i].start, sentences[i + 1].end,
                          body[sentences[i].start:sentences[i + 1].end],
                          len(texts[i].split()) + len(texts[i + 1].split()) + 2)
                   for i in range(n_windows)]
        weights = self.clusters.weights
        topic = rng.choice(len(weights), p=weights)
        cluster = np.where(rng.random(n_windows) < 0.6, topic,
                           rng.choice(len(weights), size=n_windows, p=weights))
        cluster[rng.random(n_windows) < 0.05] = -1
        vectors = self.clusters.sample(cluster, rng)
        doc = Document(doc_id, f"/corpus/{doc_id}", body, title=doc_id,
                       content_hash=f"{number}-{version}")
        return doc, sentences, windows, vectors

    def documents(self, first: int = 0) -> Iterator[tuple[Document, list[Sentence],
                                                          list[Window], np.ndarray]]:
        number = first
        while True:
            yield self.document(number)
            number += 1
