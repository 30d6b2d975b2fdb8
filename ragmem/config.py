"""Every default lives here, as nested frozen dataclasses, typed and checked on creation.

Precedence, highest first: CLI flag > environment (``RAGMEM_<SECTION>_<FIELD>``) > the
index's saved manifest > these defaults.

- ``Config()`` is the defaults; ``Config().with_env()`` adds the environment; the CLI then
  replaces what its flags set. A ``Config`` handed to ``Assistant.open``/``create`` is
  used as given (``None`` there means ``Config().with_env()``).
- The manifest holds what an index was built with: its embedder and chunking. Opening an
  index takes them from the manifest unless the config asks for other values (anything
  but the default); an index cannot change either, so such a request is refused with an
  error (the embedder when the index is opened, the chunking when documents are added)
  rather than silently ignored.

Every field with a fixed set of values is a ``Literal``; a wrong value, a wrong type or
an unknown key fails at once with a ``ConfigError`` that lists what is valid:

    >>> Config.from_dict({"retrieval": {"fusion": "max"}})
    Traceback (most recent call last):
    ...
    ragmem.errors.ConfigError: retrieval.fusion must be one of 'minmax', 'zscore', 'rrf'; got 'max'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from ragmem.config_values import check_value, env_overrides, field_hints, keys
from ragmem.errors import ConfigError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_GENERATOR = "SmolLM2-135M-Instruct"

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["minmax", "zscore", "rrf"]
Rewrite = Literal["heuristic", "generator"]
Order = Literal["score", "edges", "document"]
AnswerMode = Literal["auto", "extract", "generate"]
Precision = Literal["auto", "fp32", "fp16", "int8"]
Backend = Literal["auto", "torch", "onnx"]
Store = Literal["faiss", "milvus"]


class _Checked:
    """Checks every field against its annotation when a section is created."""

    def __post_init__(self) -> None:
        for name, hint in field_hints(type(self)).items():
            check_value(f"{_section_name(type(self))}.{name}", getattr(self, name), hint)


@dataclass(frozen=True)
class EmbedderConfig(_Checked):
    model: str = DEFAULT_EMBEDDER
    batch_size: int = 64
    # On a GPU: 256 windows a call embedded 1.65x the tokens/s of 64 on an H200
    # (eval/reports/gpu.md); a CPU gains nothing from more than 64.
    gpu_batch_size: int = 256
    device: str | None = None  # None: cuda when torch sees one, else cpu
    # What makes the vectors: "auto" (an index's own; for a new one fp16 on a GPU, int8
    # on a CPU: eval/reports/precision.md), "fp32", "fp16" (GPU) or "int8" (OpenVINO).
    precision: Precision = "auto"
    backend: Backend = "auto"  # fp32: torch or onnx; auto: onnx on a CPU with onnxruntime
    # An index refuses a query embedder of another precision than the one that made
    # its vectors, unless this is set (the vectors then differ slightly from the index's).
    allow_precision_mismatch: bool = False


@dataclass(frozen=True)
class ChunkingConfig(_Checked):
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
class DocumentsConfig(_Checked):
    # Larger files are skipped with one line (split them, or raise the limit). Bounds
    # what one file can cost: its text is held in memory while it is chunked.
    max_file_bytes: int = 20_000_000
    # A file that takes longer to read is skipped with one line (the readers look at the
    # clock as they go: parser events, PDF pages, lines). Far above real files: 20 MB of
    # HTML prose read in 6 s here and plain PDF pages at 1 ms each (busy pages take
    # pypdf tens of ms); HTML that html.parser reads in quadratic time, or a hostile
    # PDF, would otherwise hold the run for hours.
    max_read_seconds: float = 120.0


@dataclass(frozen=True)
class IndexConfig(_Checked):
    # Where a new index keeps its long-term memory: "faiss" (FAISS + SQLite in the index
    # folder) or "milvus" (a Milvus collection; see MilvusConfig). An existing index
    # keeps the store its manifest names.
    store: Store = "faiss"
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
    # Windows of many documents pooled per embedder call while indexing: bigger batches.
    embed_batch: int = 256
    # A write rewrites the FAISS snapshot once the change log since the last one holds
    # more than max(snapshot_min_changes, snapshot_share x vectors) entries. Opening
    # replays the log (an IVF re-assigns each vector: ~70 us on 2 cores) while a
    # snapshot rewrites the whole file (~2.4 s at 1M windows): 2% bounds a replay to
    # ~1.4 s at 1M.
    snapshot_min_changes: int = 2_000
    snapshot_share: float = 0.02


@dataclass(frozen=True)
class MilvusConfig(_Checked):
    """The Milvus long-term memory (``store = "milvus"``; pip install 'ragmem[scale]').

    A URI ending in ``.db`` is a milvus-lite folder run inside this process (one
    process at a time may open it); ``http://host:19530`` is a Milvus server or cluster.
    """

    # None: a new index gets the milvus-lite file `milvus.db` inside its folder; an
    # existing index the URI its manifest names (a value here overrides that: a moved
    # server).
    uri: str | None = None
    # For a server with authentication ("user:password" or an API key); never written
    # to the manifest: set it as RAGMEM_MILVUS_TOKEN.
    token: str | None = None
    # None: "<collection_prefix>_<index name>_<8 hex>", unique per new index. Name an
    # existing collection to attach another machine's index folder to it.
    collection: str | None = None
    collection_prefix: str = "ragmem"
    # None: "FLAT" (exact) on milvus-lite, "HNSW" on a server. Also "IVF_FLAT",
    # "AUTOINDEX" (server). The metric is always inner product (IP): vectors are
    # L2-normalised, so scores match the FAISS store's.
    index_type: str | None = None
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ef: int = 128  # HNSW search breadth (at least top_k)
    nlist: int = 1024  # IVF lists
    nprobe: int = 16  # IVF lists searched
    # "Strong": a write is visible to the next read, what indexing then asking needs.
    consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    # The lexical side as Milvus full-text search (a BM25 function over the window
    # text). Off, or on a Milvus without it (< 2.5), lexical search finds nothing and
    # hybrid retrieval is dense only (with a one-time warning).
    full_text: bool = True
    # Milvus's analyzer for full-text search: "standard" (lower-cased words; what
    # milvus-lite has) or, on a server, "english" (also stems: "volcanoes" ~ "volcano").
    analyzer: Literal["standard", "english"] = "standard"
    # Windows buffered by a writer before they are sent (fewer, larger requests).
    write_batch: int = 2_000
    timeout_s: float = 30.0  # per request to the server


@dataclass(frozen=True)
class RetrievalConfig(_Checked):
    top_k: int = 5  # windows fetched from long-term memory
    neighbour_sentences: int = 1  # small-to-big: sentences added on each side of a hit
    mode: Mode = "hybrid"  # "dense" (FAISS), "lexical" (BM25, SQLite FTS5) or "hybrid"
    candidates: int = 100  # hybrid: windows taken from each side before fusion
    # BM25 searches a long question by its 64 most informative terms (highest IDF): FTS5's
    # cost grows with every term's matches; 32 cost QuALITY 0.0013 nDCG (eval/reports/bm25-cap.md)
    lexical_terms: int | None = 64
    # How hybrid merges the two lists: "minmax" (weighted sum of scores scaled to [0, 1]
    # over the top `candidates`), "zscore", or "rrf" (reciprocal-rank fusion). minmax
    # with equal weights won on SciFact *train* queries (eval/reports/fusion-tuning-*).
    fusion: Fusion = "minmax"
    rrf_k: int = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    # Hybrid searches by BM25 alone a question over this share of whose word pieces the
    # embedder does not know ([UNK]; Chinese with all-MiniLM-L6-v2: 20-94%, English: 0).
    max_unknown_share: float = 0.1
    # Optional second stage: a cross-encoder (any sentence-transformers CrossEncoder id or
    # local dir) rescores the first `rerank_candidates` windows and keeps top_k.
    reranker: str | None = None
    rerank_candidates: int = 20
    # How a chat follow-up ("and when did he die?") becomes a self-contained retrieval
    # query: "heuristic" (earlier turn's key terms appended) or "generator" (rewritten).
    rewrite: Rewrite = "heuristic"
    condense_terms: int = 12  # "heuristic": context terms a condensed query may gain
    sentence_level: bool = False  # centre each passage on the hit's best sentence
    dedupe_threshold: float = 0.8  # word-set Jaccard at which a passage is a duplicate
    per_document: int | None = None  # most passages taken from one document


@dataclass(frozen=True)
class WorkingMemoryConfig(_Checked):
    # None: the generator's context length. The instruction, question and answer
    # (max_new_tokens) are reserved first; evidence gets the rest.
    token_budget: int | None = 2048
    max_new_tokens: int = 96
    # Order of the kept passages in the prompt: "score" (best first), "edges" (best at
    # the start and the end, weakest in the middle, against "lost in the middle"), or
    # "document" (by document, then position: reads like the source).
    order: Order = "score"
    # In a chat, the most the earlier turns may take of the prompt budget; the evidence
    # always keeps the rest.
    history_share: float = 0.25


@dataclass(frozen=True)
class AnsweringConfig(_Checked):
    # "extract": the answer is a verbatim span of the evidence, located exactly in its
    # document; "generate": the generator's own text with [n] citations; "auto":
    # extract with the packaged 135M generator (its free text is unreliable), generate
    # with any other model.
    mode: AnswerMode = "auto"
    # Who finds an English question's span: "reader" (MiniLM with a trained start/end
    # head, ragmem/reading.py; F1 0.601 on SQuAD dev long-document, first 1,000) or
    # "span_ranker" (features, then the generator's rescoring; F1 0.504 there).
    extractor: Literal["span_ranker", "reader"] = "reader"
    # Who answers a Chinese question: "cues" (jieba-word spans placed around the question
    # word, ragmem/chinese_answers.py) or "rescored" (the cues' best 8 rescored by the
    # generator: F1 +0.01, 26x slower). Measured on CMRC 2018 (eval/reports/chinese/).
    chinese: Literal["cues", "rescored"] = "cues"
    evidence_sentences: int = 5  # best evidence sentences whose spans are candidates
    max_span_words: int = 8  # longest candidate span, in words
    # Candidates rescored by the generator (log-likelihood of the span as the answer);
    # 0 skips the generator and ranks by features alone.
    scored_candidates: int = 24
    scored_sentences: int = 4  # evidence sentences shown to the generator when scoring
    dense_sentences: int = 12  # best sentences rescored by the embedder; 0: lexical only
    # Abstain below this estimated chance that the span is right; None: the threshold
    # shipped with the weights (chosen on SQuAD train questions, ragmem.training.span_ranker).
    abstain_below: float | None = None
    # Also score each span under a question that asks nothing and rescore by the
    # difference (its PMI with the question). Its weights predate the trained head and
    # do not use it: F1 0.387 on SQuAD test questions against the default's 0.477, at
    # ~0.7 s more per ask on 2 cores (eval/reports/answer-stage-models/). Kept for
    # comparison; leave it off.
    pmi: bool = False


@dataclass(frozen=True)
class ReaderConfig(_Checked):
    # The extractive reader (ragmem/reading.py). weights: None is the packaged file
    # (python -m ragmem.training.reader made it), trained on base_model (sha256 checked).
    base_model: str = DEFAULT_EMBEDDER
    weights: str | None = None
    # Abstain when the best span's probability is below this; None: the threshold
    # stored with the weights (chosen on SQuAD train questions).
    abstain_below: float | None = None
    max_answer_tokens: int = 30  # longest span, in the reader's tokens
    candidates: int = 20  # best starts and ends per piece combined into spans
    top_spans: int = 20  # spans kept per question, best first
    batch: int = 32  # pieces per forward pass
    runtime: Literal["onnx", "torch"] = "onnx"  # onnx: exported once, asks without torch


@dataclass(frozen=True)
class GeneratorConfig(_Checked):
    model: str = DEFAULT_GENERATOR
    device: str | None = None
    # Greedy decoding stays deterministic; a mild penalty stops small models looping.
    repetition_penalty: float = 1.15
    # "torch" (transformers), "numpy" (a Llama in NumPy: no torch, same log-probs), "llamacpp"
    # (pip install 'ragmem[llamacpp]'); "auto": numpy for a Llama on a CPU, else torch.
    backend: Literal["auto", "torch", "numpy", "llamacpp"] = "auto"
    # torch on CPU: "int8" quantises the linear layers' weights (activations per call).
    quantization: Literal["none", "int8"] = "none"
    # CPU threads for the generator; None: torch's setting / llama.cpp: every core.
    threads: int | None = None


EngineName = Literal["local", "ray"]


@dataclass(frozen=True)
class IngestConfig(_Checked):
    """Who reads, chunks and embeds while indexing; the writer is always the indexing
    process, in one batch. ``ray``: Ray Data tasks read and chunk, an actor pool embeds
    (pip install 'ragmem[scale]'); eval/reports/scale-out-ray.md measures it."""

    engine: EngineName = "local"
    # None: $RAY_ADDRESS when set, else a local Ray started for the run (and stopped
    # after it). "host:6379" or "ray://host:10001" joins a running cluster; the files
    # must then be at the same paths on its nodes (shared storage).
    ray_address: str | None = None
    # Embedding actors; each loads the model once. None: one per GPU the actors use,
    # else as many as the cluster's CPUs less one hold (that one is the reading tasks':
    # actors holding every CPU would leave nothing to read with, so that is refused).
    actors: int | None = None
    cpus_per_actor: float = 1.0  # also the torch threads of a CPU actor
    # GPUs per actor. None: 1 when the cluster has GPUs and the index holds fp16
    # vectors (what the embedder makes on a GPU), else 0. fp32 and int8 run on CPUs.
    num_gpus: float | None = None
    batch_size: int = 256  # windows per actor call, similar lengths together
    files_per_task: int = 16  # files one reading task reads and chunks


@dataclass(frozen=True)
class ServeConfig(_Checked):
    """``ragmem serve`` (ragmem/serve/). Another host than 127.0.0.1 needs a token."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # set it as RAGMEM_SERVE_TOKEN; never written anywhere
    max_asks: int = 8  # asks admitted at once (running or waiting); more get a 503
    retry_after_s: int = 2  # what the 503's Retry-After header says
    max_upload_bytes: int = 20_000_000  # one upload request, all its files together
    conversations: int = 64  # chats kept (least recently used dropped first)


@dataclass(frozen=True)
class Config:
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    milvus: MilvusConfig = field(default_factory=MilvusConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    working_memory: WorkingMemoryConfig = field(default_factory=WorkingMemoryConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    answering: AnsweringConfig = field(default_factory=AnsweringConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """The defaults, with what ``data`` sets (``{"retrieval": {"top_k": 8}}``);
        an unknown section or key is an error that lists the valid ones."""
        return cls().with_overrides(data)

    def with_overrides(self, data: Mapping[str, Any]) -> Config:
        """This config with what ``data`` sets, section by section, checked."""
        sections = {f.name: f for f in fields(self)}
        out = self
        for name, values in data.items():
            if name not in sections:
                raise ConfigError(f"unknown config section {name!r}; valid sections: "
                                  f"{', '.join(sections)}")
            sub = getattr(self, name)
            if not isinstance(values, Mapping):
                raise ConfigError(f"config section {name!r} must be a mapping of its keys "
                                  f"({', '.join(keys(sub))}), not {type(values).__name__}")
            unknown = [k for k in values if k not in keys(sub)]
            if unknown:
                raise ConfigError(f"unknown config key {name}.{unknown[0]}; valid keys of "
                                  f"{name}: {', '.join(keys(sub))}")
            out = replace(out, **{name: replace(sub, **values)})
        return out

    def with_env(self, environ: Mapping[str, str] | None = None) -> Config:
        """Apply ``RAGMEM_<SECTION>_<FIELD>`` overrides, e.g. ``RAGMEM_RETRIEVAL_TOP_K=8``.

        A variable that names a section but no field of it is an error (a typo would
        otherwise be ignored); ``RAGMEM_HOME`` and other non-section names are not ours.
        """
        return self.with_overrides(env_overrides(self, os.environ if environ is None
                                                 else environ))


def manifest_settings(config: Config, manifest_embedder: str,
                      manifest_chunking: Mapping[str, Any]) -> Config:
    """``config`` with the embedder and chunking of an index's manifest, wherever the
    config leaves them at their defaults (see the module docstring)."""
    chunking = {k: v for k, v in manifest_chunking.items() if k in keys(config.chunking)}
    asked = {k: v for k, v in asdict(config.chunking).items()
             if v != getattr(ChunkingConfig(), k)}
    embedder = config.embedder
    if embedder.model == DEFAULT_EMBEDDER:
        embedder = replace(embedder, model=manifest_embedder)
    return replace(config, embedder=embedder,
                   chunking=ChunkingConfig(**{**chunking, **asked}))


def _section_name(cls: type) -> str:
    """``RetrievalConfig`` -> ``"retrieval"``: its field name in ``Config``."""
    return next((f.name for f in fields(Config) if f.type in (cls, cls.__name__)),
                cls.__name__)


def indexes_home() -> Path:
    """Where ``ragmem index ... --index NAME`` puts NAME: ``$RAGMEM_HOME`` or ./indexes."""
    return Path(os.environ.get("RAGMEM_HOME", "indexes"))


def cache_home() -> Path:
    """Converted model weights (the GGUF -> safetensors cache) live here."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ragmem"
    return Path(os.environ.get("RAGMEM_CACHE", default))
