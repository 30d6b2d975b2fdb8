"""The FAISS side of long-term memory: ids are docstore window ids.

Searches run on the GPU when faiss sees one; what is saved is always the CPU index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.config import IndexConfig
from ragmem.memory.manifest import write_atomic

log = logging.getLogger(__name__)

# Fewer queries than this search on one OpenMP thread (FAISS uses BLAS from 20 on).
SINGLE_THREAD_BELOW = 20


def _faiss() -> Any:
    import faiss  # heavy: imported on first use

    return faiss


def default_factory(n_vectors: int, approximate_from: int) -> str:
    """Exact search for small memories; past the threshold, an IVF that still supports delete.

    >>> default_factory(10_000, 200_000)
    'IDMap2,Flat'
    >>> default_factory(1_000_000, 200_000)
    'IVF4000,SQ8'
    """
    if n_vectors < approximate_from:
        return "IDMap2,Flat"
    # ~4*sqrt(n) lists is FAISS's own rule of thumb; SQ8 keeps 1M x 384 under 400 MB.
    nlist = int(4 * np.sqrt(n_vectors))
    return f"IVF{nlist},SQ8"


def with_ids(factory: str) -> str:
    """IVF indexes carry ids themselves (and delete by them); others need an IDMap2 around.

    >>> with_ids("HNSW32"), with_ids("IVF256,PQ16"), with_ids("IDMap2,Flat")
    ('IDMap2,HNSW32', 'IVF256,PQ16', 'IDMap2,Flat')
    """
    if factory.startswith(("IDMap", "IVF")) or ",IVF" in factory:
        return factory
    return f"IDMap2,{factory}"


class VectorIndex:
    def __init__(self, index: Any, *, use_gpu: bool = IndexConfig.use_gpu,
                 nprobe: int = IndexConfig.nprobe,
                 ef_search: int = IndexConfig.ef_search) -> None:
        self.cpu = index
        self._gpu: Any = None
        self._dirty_gpu = True
        self.use_gpu = use_gpu
        self.nprobe = nprobe
        self.ef_search = ef_search

    @classmethod
    def empty(cls, dim: int, factory: str = "IDMap2,Flat", **kw: Any) -> VectorIndex:
        faiss = _faiss()
        return cls(faiss.index_factory(dim, with_ids(factory), faiss.METRIC_INNER_PRODUCT), **kw)

    @classmethod
    def load(cls, path: Path, *, mmap: bool = False, **kw: Any) -> VectorIndex:
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        return cls(faiss.read_index(str(path), flags), **kw)

    def save(self, path: Path) -> None:
        faiss = _faiss()
        write_atomic(path, faiss.serialize_index(self.cpu).tobytes())

    @property
    def mmapped(self) -> bool:
        return False

    @property
    def ntotal(self) -> int:
        return int(self.cpu.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.cpu.is_trained)

    def train(self, sample: np.ndarray) -> None:
        self.cpu.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self.cpu.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                              np.asarray(ids, dtype=np.int64))
        self._dirty_gpu = True

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove by id. Raises RuntimeError for index types that cannot delete (HNSW):
        the caller rebuilds those from the docstore."""
        if len(ids) == 0:
            return 0
        faiss = _faiss()
        removed = self.cpu.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
        self._dirty_gpu = True
        return int(removed)

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        faiss = _faiss()
        if hasattr(self.cpu, "id_map"):
            return faiss.vector_to_array(self.cpu.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self.cpu)
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(lists.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product; ``allowed_ids`` restricts the search inside FAISS."""
        faiss = _faiss()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        params = self._params(faiss, allowed_ids)
        index = self.cpu if params is not None else self._searcher()
        # A few queries on one thread: OpenMP's waiting threads made one exact search of
        # 10k vectors take 130 ms (p50) on 2 busy cores against 0.5 ms on one thread
        # (eval/reports/query-latency.md). Batches (FAISS's BLAS path) keep every core.
        threads = faiss.omp_get_max_threads()
        if len(q) < SINGLE_THREAD_BELOW and threads > 1:
            faiss.omp_set_num_threads(1)
        try:
            if params is not None:
                return index.search(q, k, params=params)
            return index.search(q, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def _params(self, faiss: Any, allowed_ids: np.ndarray | None) -> Any:
        sel = None
        if allowed_ids is not None:
            sel = faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
        ivf = faiss.try_extract_index_ivf(self.cpu)
        if ivf is not None:
            ivf.nprobe = self.nprobe
            return faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe) if sel else None
        inner = faiss.downcast_index(self.cpu.index) if hasattr(self.cpu, "index") else None
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.ef_search
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self.ef_search) if sel else None
        return faiss.SearchParameters(sel=sel) if sel else None

    def _searcher(self) -> Any:
        if not self.use_gpu:
            return self.cpu
        faiss = _faiss()
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            return self.cpu
        if self._gpu is None or self._dirty_gpu:
            try:
                self._res = faiss.StandardGpuResources()
                self._gpu = faiss.index_cpu_to_gpu(self._res, 0, self.cpu)
            except Exception as exc:  # an index type the GPU lacks: stay on the CPU
                log.warning("faiss GPU clone failed (%s); searching on the CPU", exc)
                self.use_gpu = False
                return self.cpu
            self._dirty_gpu = False
        return self._gpu


class LayeredIndex:
    """A read-only, memory-mapped snapshot plus, in RAM, what the change log added or
    deleted since it: how a reader opens an index larger than it wants in memory.

    Deleted snapshot ids are masked at search time (over-fetching by their number, which
    the snapshot policy keeps to ~2% of the index); added vectors sit in a small flat index.
    """

    def __init__(self, base: VectorIndex, dim: int) -> None:
        self.base = base
        self.delta = VectorIndex.empty(dim, "IDMap2,Flat", use_gpu=False)
        self.deleted: set[int] = set()

    @property
    def ntotal(self) -> int:
        return self.base.ntotal - len(self.deleted) + self.delta.ntotal

    @property
    def is_trained(self) -> bool:
        return True

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        self.delta.add(ids, vectors)  # ids are never reused: no clash with the snapshot

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        self.delta.remove(ids)
        before = len(self.deleted)
        self.deleted.update(int(i) for i in ids)
        return len(self.deleted) - before

    def ids(self) -> np.ndarray:
        base = self.base.ids()
        kept = base[~np.isin(base, np.fromiter(self.deleted, np.int64, len(self.deleted)))]
        return np.concatenate([kept, self.delta.ids()])

    def save(self, path: Path) -> None:
        raise RuntimeError("a memory-mapped index is read-only; open it without mmap to write")

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        s1, i1 = self.base.search(queries, k + len(self.deleted), allowed_ids)
        if self.deleted:
            gone = np.isin(i1, np.fromiter(self.deleted, np.int64, len(self.deleted)))
            i1 = np.where(gone, -1, i1)
        if self.delta.ntotal:
            s2, i2 = self.delta.search(queries, k, allowed_ids)
            s1, i1 = np.concatenate([s1, s2], axis=1), np.concatenate([i1, i2], axis=1)
        s1 = np.where(i1 < 0, -np.inf, s1)
        order = np.argsort(-s1, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s1, order, 1), np.take_along_axis(i1, order, 1)
