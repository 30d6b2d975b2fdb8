"""One forward pass of a Llama decoder in NumPy, float32: what ``numpy_llama`` runs.

    >>> weights = LlamaWeights.load(folder / "model.safetensors", config)  # doctest: +SKIP
    >>> out = forward(weights, ids, positions, allowed, cache=None, logit_rows=[len(ids) - 1])

``allowed[i, j]`` says whether token ``i`` attends to position ``j`` of the cache followed
by the new tokens: a causal triangle for a prompt, a trie's ancestry for scored
continuations. The cache is a tuple of ``(keys, values)`` per layer, each
``(kv_heads, positions, head_dim)``; a forward returns a new one and never changes the one
it was given, so one prompt's cache serves many forwards. The arithmetic is transformers'
``LlamaForCausalLM`` (RMSNorm, rotary positions, grouped-query attention, SiLU-gated MLP),
so log-probs agree with it to float32 rounding.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

Cache = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class Layer:
    attention_norm: np.ndarray
    qkv: np.ndarray  # (q + k + v outputs, hidden): the three projections in one product
    out: np.ndarray
    mlp_norm: np.ndarray
    gate: np.ndarray
    up: np.ndarray
    down: np.ndarray


@dataclass(frozen=True)
class LlamaWeights:
    embed: np.ndarray  # (vocab, hidden)
    layers: tuple[Layer, ...]
    norm: np.ndarray
    head: np.ndarray  # (vocab, hidden); the embeddings when they are tied
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    inv_freq: np.ndarray  # rotary frequencies, (head_dim / 2,)

    @classmethod
    def load(cls, path: Path, config: dict[str, Any]) -> LlamaWeights:
        """The weights of a transformers ``model.safetensors`` (read without torch)."""
        tensors = {k.removeprefix("model."): v for k, v in read_safetensors(path).items()}
        heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
        head_dim = int(config.get("head_dim") or hidden // heads)
        rope = config.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
        layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"layers.{i}."
            layers.append(Layer(
                attention_norm=tensors[p + "input_layernorm.weight"],
                qkv=np.concatenate([tensors[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]),
                out=tensors[p + "self_attn.o_proj.weight"],
                mlp_norm=tensors[p + "post_attention_layernorm.weight"],
                gate=tensors[p + "mlp.gate_proj.weight"], up=tensors[p + "mlp.up_proj.weight"],
                down=tensors[p + "mlp.down_proj.weight"]))
        embed = tensors["embed_tokens.weight"]
        exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim
        return cls(embed=embed, layers=tuple(layers), norm=tensors["norm.weight"],
                   head=tensors.get("lm_head.weight", embed), heads=heads,
                   kv_heads=int(config.get("num_key_value_heads") or heads), head_dim=head_dim,
                   eps=float(config.get("rms_norm_eps", 1e-6)),
                   inv_freq=(1.0 / (theta ** exponents)).astype(np.float32))


@dataclass(frozen=True)
class Forward:
    logits: np.ndarray  # (len(logit_rows), vocab)
    logprobs: np.ndarray  # the same rows, log-softmaxed
    states: np.ndarray  # (len(state_rows), len(layers), hidden); empty without layers
    cache: Cache


def forward(w: LlamaWeights, ids: np.ndarray, positions: np.ndarray, allowed: np.ndarray,
            cache: Cache | None, logit_rows: Sequence[int], layers: Sequence[int] = (),
            state_rows: Sequence[int] = ()) -> Forward:
    """Run ``ids`` at ``positions`` after ``cache``; logits of the tokens after
    ``logit_rows``, and the hidden states at ``state_rows`` after ``layers`` (counted as
    transformers does: 0 the embeddings, -1 or the last the final norm's output)."""
    n = len(ids)
    x = w.embed[ids]
    angles = positions.astype(np.float32)[:, None] * w.inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=1)
    cos, sin = np.cos(angles), np.sin(angles)
    mask = np.where(allowed, np.float32(0), np.float32(-np.inf))
    group, d = w.heads // w.kv_heads, w.head_dim
    scale = np.float32(d ** -0.5)
    kept = [x] if layers else []
    new_cache = []
    for i, layer in enumerate(w.layers):
        h = _rms(x, layer.attention_norm, w.eps)
        qkv = h @ layer.qkv.T
        q = _rotary(qkv[:, :w.heads * d].reshape(n, w.heads, d).transpose(1, 0, 2), cos, sin)
        k = _rotary(qkv[:, w.heads * d:(w.heads + w.kv_heads) * d]
                    .reshape(n, w.kv_heads, d).transpose(1, 0, 2), cos, sin)
        v = qkv[:, (w.heads + w.kv_heads) * d:].reshape(n, w.kv_heads, d).transpose(1, 0, 2)
        if cache is not None:
            k = np.concatenate([cache[i][0], k], axis=1)
            v = np.concatenate([cache[i][1], v], axis=1)
        new_cache.append((k, v))
        # Query head j reads key head j // group: group the queries by their key head.
        scores = (q.reshape(w.kv_heads, group * n, d) @ k.transpose(0, 2, 1)) * scale
        scores = scores.reshape(w.kv_heads, group, n, -1) + mask
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        attended = scores.reshape(w.kv_heads, group * n, -1) @ v
        attended = attended.reshape(w.heads, n, d).transpose(1, 0, 2).reshape(n, w.heads * d)
        x = x + attended @ layer.out.T
        h = _rms(x, layer.mlp_norm, w.eps)
        gate = h @ layer.gate.T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ layer.up.T)) @ layer.down.T
        if layers:
            kept.append(x)
    final = _rms(x, w.norm, w.eps)
    logits = final[list(logit_rows)] @ w.head.T
    states = np.empty((0,), dtype=np.float32)
    if layers:
        kept[-1] = final
        rows = list(state_rows)
        states = np.stack([kept[k][rows] for k in layers], axis=1).astype(np.float32)
    return Forward(logits, log_softmax(logits), states, tuple(new_cache))


def _rms(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return (x / np.sqrt(variance + np.float32(eps))) * weight


def _rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    top = logits.max(axis=-1, keepdims=True)
    return logits - (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file, memory-mapped (read-only views: no copy,
    pages read as a forward first touches them)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {entry['dtype']}, not F32")
        start, end = entry["data_offsets"]
        out[name] = data[start:end].view(np.float32).reshape(entry["shape"])
    return out


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """NumPy's OpenBLAS on ``n`` threads inside the block. Its idle threads spin: on a
    shared 2-core machine (load 7) a 136-token forward took 15 s on 2 threads and 2 s on
    one. A NumPy without a bundled OpenBLAS is left as it is."""
    calls = _openblas_threads()
    if calls is None:
        yield
        return
    get, set_ = calls
    before = int(get())
    set_(n)
    try:
        yield
    finally:
        set_(before)


@cache
def _openblas_threads() -> tuple[Any, Any] | None:
    libs = sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(str(path))
        for name in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{name}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{name}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    set_.argtypes = [ctypes.c_int]
                    return get, set_
    return None
