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
- ``OnnxEmbedder`` (``onnx_runtime``): on CPU without PyTorch. The model is exported to
  ONNX once (``onnx_export``, cached under ``~/.cache/ragmem/onnx``, its attention and
  GELU fused); ``fp32`` runs it on ONNX Runtime, ``int8`` (the CPU default) on OpenVINO
  after NNCF quantised it statically, calibrated on the bundled demo corpus
  (``openvino_int8``). A query process needs only ``onnxruntime`` or ``openvino`` and
  ``tokenizers``: it starts fast.
"""

from ragmem.embedding.base import PRECISIONS, Embedder, cuda_available, default_precision
from ragmem.embedding.factory import from_config, token_counter
from ragmem.embedding.onnx_export import OnnxSpec, onnx_model
from ragmem.embedding.onnx_runtime import OnnxEmbedder
from ragmem.embedding.sentence_transformer import SentenceTransformerEmbedder

__all__ = ["PRECISIONS", "Embedder", "OnnxEmbedder", "OnnxSpec", "SentenceTransformerEmbedder",
           "cuda_available", "default_precision", "from_config", "onnx_model", "token_counter"]
