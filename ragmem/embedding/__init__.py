"""Texts -> vectors: the ``Embedder`` interface (``base``) and its two backends.

    >>> embedder = from_config(EmbedderConfig())      # loads nothing yet
    >>> embedder.embed(["a cat", "a dog"]).shape      # doctest: +SKIP
    (2, 384)

Vectors are float32 and L2-normalised, so an inner product is a cosine similarity.
``model_id`` and ``precision`` are stored in index manifests: an index only opens with
the embedder that built it, at the precision that made its vectors.

Backends:

- ``SentenceTransformerEmbedder`` (``sentence_transformer``): PyTorch, fp32 on CPU,
  fp16 on CUDA.
- ``OnnxEmbedder`` (``onnx_runtime``): ONNX Runtime on CPU, the model exported to ONNX
  once (``onnx_export``, cached under ``~/.cache/ragmem/onnx``), its attention and GELU
  fused, and for ``int8`` its matrix products quantised dynamically (int8 weights per
  output channel, uint8 activations per batch). The FFN's second matrix product reads
  the GELU's long-tailed output and stays in fp32: quantising it too brings the mean
  cosine to the fp32 vectors from 0.997 down to 0.994 (eval/reports/int8-embedding.md).
  Running needs only ``onnxruntime`` and ``tokenizers``, no PyTorch: a query process
  starts fast.
"""

from ragmem.embedding.base import PRECISIONS, Embedder, cuda_available, default_precision
from ragmem.embedding.factory import from_config, token_counter
from ragmem.embedding.onnx_export import OnnxSpec, onnx_model
from ragmem.embedding.onnx_runtime import OnnxEmbedder
from ragmem.embedding.sentence_transformer import SentenceTransformerEmbedder

__all__ = ["PRECISIONS", "Embedder", "OnnxEmbedder", "OnnxSpec", "SentenceTransformerEmbedder",
           "cuda_available", "default_precision", "from_config", "onnx_model", "token_counter"]
