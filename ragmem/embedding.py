"""Texts -> vectors: the ``Embedder`` interface and its two backends.

    >>> embedder = from_config(EmbedderConfig())      # loads nothing yet
    >>> embedder.embed(["a cat", "a dog"]).shape      # doctest: +SKIP
    (2, 384)

Vectors are float32 and L2-normalised, so an inner product is a cosine similarity.
``model_id`` and ``precision`` are stored in index manifests: an index only opens with
the embedder that built it, at the precision that made its vectors.

Backends:

- ``SentenceTransformerEmbedder``: PyTorch, fp32 on CPU, fp16 on CUDA.
- ``OnnxEmbedder``: ONNX Runtime on CPU, the model exported to ONNX once (cached under
  ``~/.cache/ragmem/onnx``), its attention and GELU fused, and for ``int8`` its matrix
  products quantised dynamically (int8 weights per output channel, uint8 activations
  per batch). The FFN's second matrix product reads the GELU's long-tailed output and
  stays in fp32: quantising it too brings the mean cosine to the fp32 vectors from
  0.997 down to 0.994 (eval/reports/int8-embedding.md). Running needs only ``onnxruntime`` and
  ``tokenizers``, no PyTorch: a query process starts fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragmem.config import DEFAULT_EMBEDDER, EmbedderConfig, cache_home
from ragmem.errors import ModelError
from ragmem.models import ResolvedModel, load_error, require_local, resolve

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PRECISIONS = ("fp32", "fp16", "int8")
# Bumped whenever the export or quantisation recipe changes: cached files are rebuilt.
ONNX_RECIPE = 1


class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def precision(self) -> str:
        """What made the vectors: "fp32", "fp16" or "int8" (stored in the index)."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), each row of unit length."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` untruncated, special tokens included."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use (embed, count_tokens, dim)."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, batch_size: int = 64, device: str | None = None
    ) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._counter: Tokenizer | None = None
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        return "fp16" if self._resolved_device().startswith("cuda") else "fp32"

    @property
    def dim(self) -> int:
        return int(self._loaded().get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self._loaded().max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self._loaded()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalised(vectors)

    def count_tokens(self, text: str) -> int:
        self._loaded()
        assert self._counter is not None
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def _resolved_device(self) -> str:
        if self._device is None:
            self._device = "cuda" if cuda_available() else "cpu"
        return self._device

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model, self._counter = self._load()
            return self._model

    def _load(self) -> tuple[Any, Tokenizer]:
        from sentence_transformers import SentenceTransformer

        resolved = resolve(self.model_id, "embedder")
        device = self._resolved_device()
        try:
            model = SentenceTransformer(resolved.path, device=device)
        except (OSError, ValueError) as error:  # not found, or not a model
            raise load_error(resolved, error) from error
        if device.startswith("cuda"):
            model.half()
        return model, _counter(model.tokenizer.backend_tokenizer)


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime on CPU, ``int8`` or ``fp32``.

    The first use exports the model (PyTorch, a few seconds) into the cache; later
    processes load the cached file with ONNX Runtime alone.
    """

    def __init__(self, model: str = DEFAULT_EMBEDDER, precision: str = "int8",
                 batch_size: int = 64, threads: int | None = None) -> None:
        if precision not in ("int8", "fp32"):
            raise ModelError(f"the ONNX embedder runs int8 or fp32, not {precision!r}")
        self.model_id = model
        self.precision = precision
        self.batch_size = batch_size
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._spec: OnnxSpec | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._loaded().dim

    @property
    def max_tokens(self) -> int:
        return self._loaded().max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        spec = self._loaded()
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        assert self._tokenizer is not None
        encodings = self._tokenizer.encode_batch(list(texts))
        # Longest first, in batches of similar length: little padding, and a batch's
        # dynamic activation scale is not set by padding positions.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = len(encodings[rows[0]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
            out[rows] = _pool(hidden, mask, spec.pooling)
        return _normalised(out)

    def count_tokens(self, text: str) -> int:
        self._loaded()
        assert self._counter is not None
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def _loaded(self) -> OnnxSpec:
        with self._lock:
            if self._spec is None:
                self._load()
            assert self._spec is not None
            return self._spec

    def _load(self) -> None:
        try:
            import onnx  # noqa: F401  (needed to export and quantise)
            import onnxruntime as ort
        except ImportError as error:
            raise ModelError(
                f"embedder precision {self.precision} runs on ONNX Runtime, which is not "
                "installed; pip install 'ragmem[int8]' (or set "
                "RAGMEM_EMBEDDER_PRECISION=fp32)") from error
        from tokenizers import Tokenizer

        resolved = require_local(self.model_id, "embedder")
        folder = onnx_model(resolved, self.precision)
        spec = OnnxSpec(**json.loads((folder / "spec.json").read_text(encoding="utf-8")))
        options = ort.SessionOptions()
        # Idle threads sleep instead of spinning: on a CPU shared with other work, spinning
        # takes cores from it (and from our own other threads) for nothing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self._threads:
            options.intra_op_num_threads = self._threads
        self._session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter = _counter(tokenizer)
        tokenizer.enable_truncation(spec.max_tokens)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._spec = spec


@dataclass(frozen=True)
class OnnxSpec:
    """What the exported graph needs around it (``spec.json`` beside ``model.onnx``)."""

    dim: int
    max_tokens: int
    pooling: str  # "mean" or "cls"
    precision: str
    source: str


def onnx_model(resolved: ResolvedModel, precision: str) -> Path:
    """The cached folder holding ``model.onnx``, ``tokenizer.json`` and ``spec.json`` for
    ``resolved`` at ``precision``; exported (and quantised) on first use."""
    folder = cache_home() / "onnx" / f"{_slug(resolved.name)}-{_fingerprint(resolved)}-{precision}"
    if (folder / "spec.json").exists():
        return folder
    source = onnx_model(resolved, "fp32") if precision == "int8" else None
    folder.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(folder) + ".lock"):  # two processes exporting at once: one does it
        if not (folder / "spec.json").exists():
            with _staging(folder) as tmp:
                if source is None:
                    _export(resolved, tmp)
                else:  # int8 is quantised from the fused fp32 graph
                    _quantise(source / "model.onnx", tmp / "model.onnx")
                    shutil.copy(source / "tokenizer.json", tmp / "tokenizer.json")
                    spec = json.loads((source / "spec.json").read_text(encoding="utf-8"))
                    (tmp / "spec.json").write_text(json.dumps(spec | {"precision": "int8"}),
                                                   encoding="utf-8")
    return folder


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A temp folder beside ``folder`` that becomes it when the block succeeds."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export(resolved: ResolvedModel, tmp: Path) -> None:
    """The model as fused fp32 ONNX, its tokenizer and its spec, into ``tmp``."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        st: Any = SentenceTransformer(resolved.path, device="cpu")
    except (OSError, ValueError) as error:
        raise load_error(resolved, error) from error
    kinds = [type(m).__name__ for m in st]
    pooling = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} \
            or pooling not in ("mean", "cls"):
        raise ModelError(
            f"{resolved.name} ({' + '.join(kinds)}, pooling {pooling}) cannot run on the ONNX "
            "embedder, which takes a transformer with mean or CLS pooling; "
            "set RAGMEM_EMBEDDER_PRECISION=fp32")
    transformer: Any = st[0].auto_model.eval()
    # The eager attention exports to the pattern ONNX Runtime fuses into one kernel.
    transformer.set_attn_implementation("eager")

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on shape-dependent Python branches: the axes are dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), (sample, sample, torch.zeros_like(sample)),
                          str(tmp / "unfused.onnx"), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    config = transformer.config
    _optimise(tmp / "unfused.onnx", tmp / "model.onnx", config.num_attention_heads,
              config.hidden_size)
    (tmp / "unfused.onnx").unlink()
    st.tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
    spec = OnnxSpec(dim=int(st.get_embedding_dimension()), max_tokens=int(st.max_seq_length),
                    pooling=str(pooling), precision="fp32", source=resolved.path)
    (tmp / "spec.json").write_text(json.dumps(vars(spec), indent=2), encoding="utf-8")


def _optimise(src: Path, dst: Path, heads: int, hidden: int) -> None:
    """Fuse attention, GELU and layer norms (ONNX Runtime's BERT optimiser)."""
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimizer.optimize_model(str(src), model_type="bert", num_heads=heads,
                                     hidden_size=hidden, opt_level=1)
    model.save_model_to_file(str(dst))


def _quantise(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    # The FFN's second product: its input is the GELU output (a long positive tail that
    # one per-batch uint8 scale represents badly).
    keep_fp32 = [node.name for node in graph.node if node.op_type == "MatMul"
                 and producer.get(node.input[0]) in ("Gelu", "BiasGelu", "FastGelu")]
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=keep_fp32,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def _normalised(vectors: Any) -> np.ndarray:
    # Normalise here, in float32: on CUDA the model runs in fp16.
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _counter(tokenizer: Tokenizer) -> Tokenizer:
    # A private copy of the fast tokenizer for counting: the shared one keeps whatever
    # truncation the last encode set, and transformers warns about long inputs.
    counter = tokenizer.__class__.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")[:60]


def _fingerprint(resolved: ResolvedModel) -> str:
    """Changes when the source weights or the recipe change (size and mtime: cheap)."""
    digest = hashlib.sha256(f"{resolved.path}\n{ONNX_RECIPE}\n".encode())
    folder = Path(resolved.path)
    if folder.is_dir():
        for path in sorted(folder.glob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def token_counter(cfg: EmbedderConfig) -> Callable[[str], int]:
    """``count_tokens`` of the embedder ``cfg`` makes, without loading its weights: from
    the model folder's ``tokenizer.json`` (the tokenizers library alone, ~0.2 s) when it
    has one, else from the embedder itself. For workers that only chunk."""
    resolved = resolve(cfg.model, "embedder")
    path = Path(resolved.path) / "tokenizer.json"
    if not path.is_file():
        return from_config(cfg).count_tokens
    from tokenizers import Tokenizer

    counter = _counter(Tokenizer.from_file(str(path)))
    return lambda text: len(counter.encode(text, add_special_tokens=True).ids)


def cuda_available() -> bool:
    """Whether torch sees a GPU; imports torch only on a machine with an NVIDIA driver."""
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


def default_precision(device: str | None = None) -> str:
    """What ``precision="auto"`` means for a new index: fp16 on a GPU, fp32 on a CPU.

    int8 stays opt-in on CPUs: on AVX2 without VNNI it embeds 1.3x faster than fp32 at a
    cosine of 0.995-0.997 to the fp32 vectors (eval/reports/int8-embedding.md).
    """
    if device is not None:
        return "fp16" if device.startswith("cuda") else "fp32"
    return "fp16" if cuda_available() else "fp32"


def from_config(cfg: EmbedderConfig) -> Embedder:
    """The embedder ``cfg`` asks for; ``precision="auto"`` is :func:`default_precision`."""
    precision = cfg.precision if cfg.precision != "auto" else default_precision(cfg.device)
    if precision not in PRECISIONS:
        raise ModelError(f"unknown embedder precision {cfg.precision!r}; use auto, "
                         f"{', '.join(PRECISIONS)}")
    if precision == "int8" or (precision == "fp32" and cfg.backend == "onnx"):
        if cfg.device is not None and cfg.device.startswith("cuda"):
            raise ModelError(f"{precision} on ONNX Runtime runs on the CPU, not "
                             f"{cfg.device}; use precision fp16 on a GPU")
        return OnnxEmbedder(cfg.model, precision, batch_size=cfg.batch_size)
    device = cfg.device or ("cuda" if precision == "fp16" else "cpu")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ModelError("fp16 embedding runs on a GPU and none is in use here; "
                         "use precision int8 or fp32 on a CPU")
    batch = cfg.gpu_batch_size if device.startswith("cuda") else cfg.batch_size
    return SentenceTransformerEmbedder(cfg.model, batch_size=batch, device=device)
