"""Every default lives here, as nested frozen dataclasses.

Precedence, highest first: CLI flag > environment (``RAGMEM_...``) > the index's
saved manifest > these defaults.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_GENERATOR = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class EmbedderConfig:
    model: str = DEFAULT_EMBEDDER
    batch_size: int = 64
    device: str | None = None  # None: cuda when torch sees one, else cpu
    # What makes the vectors: "auto" (an index's own precision; for a new index fp16 on
    # a GPU, fp32 on a CPU), "fp32", "fp16" (GPU) or "int8" (ONNX Runtime, CPU).
    precision: str = "auto"
    backend: str = "auto"  # fp32 only: "torch" (auto) or "onnx" (ONNX Runtime)
    # An index refuses a query embedder of another precision than the one that made
    # its vectors, unless this is set (the vectors then differ slightly from the index's).
    allow_precision_mismatch: bool = False


@dataclass(frozen=True)
class ChunkingConfig:
    # Tokens of the embedder's tokenizer per window; 256 is all-MiniLM-L6-v2's limit,
    # and the two special tokens it adds are counted.
    window_tokens: int = 256
    overlap_sentences: int = 1
    # A sentence (or a line without full stops) longer than this many characters is cut
    # at the last whitespace or clause mark before it, before the tokenizer sees it:
    # tokenizing a 50 MB line whole took ~7 GB. 2048 is above 256 tokens of any
    # ordinary prose (~4-5 characters a token), so only runaway input is affected.
    max_sentence_chars: int = 2048


@dataclass(frozen=True)
class DocumentsConfig:
    # Larger files are skipped with one line (split them, or raise the limit). Bounds
    # what one file can cost: its text is held in memory while it is chunked.
    max_file_bytes: int = 20_000_000


@dataclass(frozen=True)
class IndexConfig:
    # None: exact search (flat) below `approximate_from` vectors, IVF + SQ8 above it
    # (IVF can delete by id; HNSW cannot, and is rebuilt on delete if asked for).
    factory: str | None = None
    approximate_from: int = 200_000
    nprobe: int = 16
    ef_search: int = 128
    use_gpu: bool = True  # only when faiss sees a GPU
    # Readers memory-map the FAISS snapshot instead of reading it into RAM (writers
    # always load it: they change it). For indexes larger than RAM would like.
    mmap: bool = False


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 5  # windows fetched from long-term memory
    neighbour_sentences: int = 1  # small-to-big: sentences added on each side of a hit
    mode: str = "hybrid"  # "dense" (FAISS), "lexical" (BM25, SQLite FTS5) or "hybrid"
    candidates: int = 100  # hybrid: windows taken from each side before fusion
    # BM25 searches a long question by its most informative terms (highest IDF) only:
    # FTS5's cost grows with every term's matches (eval/reports/query-latency.md).
    lexical_terms: int | None = 32
    # How hybrid merges the two lists: "minmax" (weighted sum of scores scaled to [0, 1]
    # over the top `candidates`), "zscore", or "rrf" (reciprocal-rank fusion). minmax
    # with equal weights won on SciFact *train* queries (eval/reports/fusion-tuning-*).
    fusion: str = "minmax"
    rrf_k: int = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    # Optional second stage: a cross-encoder (any sentence-transformers CrossEncoder id or
    # local dir) rescores the first `rerank_candidates` windows and keeps top_k.
    reranker: str | None = None
    rerank_candidates: int = 20
    # How a chat follow-up ("and when did he die?") becomes a self-contained retrieval
    # query: "heuristic" (earlier turn's key terms appended) or "generator" (rewritten).
    rewrite: str = "heuristic"
    sentence_level: bool = False  # centre each passage on the hit's best sentence
    dedupe_threshold: float = 0.8  # word-set Jaccard at which a passage is a duplicate
    per_document: int | None = None  # most passages taken from one document


@dataclass(frozen=True)
class WorkingMemoryConfig:
    # None: the generator's context length. The instruction, question and answer
    # (max_new_tokens) are reserved first; evidence gets the rest.
    token_budget: int | None = 2048
    max_new_tokens: int = 96
    # Order of the kept passages in the prompt: "score" (best first), "edges" (best at
    # the start and the end, weakest in the middle, against "lost in the middle"), or
    # "document" (by document, then position: reads like the source).
    order: str = "score"
    # In a chat, the most the earlier turns may take of the prompt budget; the evidence
    # always keeps the rest.
    history_share: float = 0.25


@dataclass(frozen=True)
class GeneratorConfig:
    model: str = DEFAULT_GENERATOR
    device: str | None = None
    # Greedy decoding stays deterministic; a mild penalty stops small models looping.
    repetition_penalty: float = 1.15
    # "torch": transformers; "llamacpp": the model's GGUF run by llama.cpp
    # (pip install 'ragmem[llamacpp]'). Measured in eval/reports/generator-speed.md.
    backend: Literal["torch", "llamacpp"] = "torch"
    # torch on CPU: "int8" quantises the linear layers' weights (activations per call).
    quantization: Literal["none", "int8"] = "none"
    # CPU threads for the generator; None: torch's setting / llama.cpp: every core.
    threads: int | None = None


@dataclass(frozen=True)
class Config:
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    working_memory: WorkingMemoryConfig = field(default_factory=WorkingMemoryConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        parts: dict[str, Any] = {}
        for f in fields(cls):
            sub_cls = type(getattr(cls(), f.name))
            known = {g.name for g in fields(sub_cls)}
            given = {k: v for k, v in data.get(f.name, {}).items() if k in known}
            parts[f.name] = sub_cls(**given)
        return cls(**parts)

    def with_env(self, environ: dict[str, str] | None = None) -> Config:
        """Apply ``RAGMEM_<SECTION>_<FIELD>`` overrides, e.g. ``RAGMEM_RETRIEVAL_TOP_K=8``."""
        env = os.environ if environ is None else environ
        out = self
        for f in fields(self):
            sub = getattr(self, f.name)
            changes: dict[str, Any] = {}
            for g in fields(sub):
                key = f"RAGMEM_{f.name}_{g.name}".upper()
                if key in env:
                    changes[g.name] = _coerce(env[key], getattr(sub, g.name))
            if changes:
                out = replace(out, **{f.name: replace(sub, **changes)})
        return out


def _coerce(raw: str, current: Any) -> Any:
    if isinstance(current, bool):
        return raw.lower() in {"1", "true", "yes", "on"}
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if raw.lower() in {"", "none"}:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def indexes_home() -> Path:
    """Where ``ragmem index ... --index NAME`` puts NAME: ``$RAGMEM_HOME`` or ./indexes."""
    return Path(os.environ.get("RAGMEM_HOME", "indexes"))


def cache_home() -> Path:
    """Converted model weights (the GGUF -> safetensors cache) live here."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ragmem"
    return Path(os.environ.get("RAGMEM_CACHE", default))
