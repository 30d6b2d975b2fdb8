"""Low-rank adapters (LoRA) on a BERT encoder's attention and feed-forward layers,
merged back into plain weights after training so that the shipped file has the base
model's own tensor names.

    >>> add_lora(encoder, rank=16)   # doctest: +SKIP
    >>> ...train...
    >>> merge_lora(encoder)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

TARGETS = ("query", "key", "value", "dense")


class LoraLinear(torch.nn.Module):
    """``base(x) + scale * x A^T B^T``; B starts at zero, so training starts at the base."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / rank ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = (alpha or 2 * rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    def merged(self) -> torch.nn.Linear:
        with torch.no_grad():
            self.base.weight += self.scale * (self.b @ self.a)
        self.base.weight.requires_grad = True  # shipped: the merged weight changed
        return self.base


def add_lora(encoder: Any, rank: int) -> None:
    """Wrap every target linear layer of the encoder's transformer layers."""
    for layer in encoder.encoder.layer:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if name in TARGETS and isinstance(child, torch.nn.Linear):
                    setattr(parent, name, LoraLinear(child, rank))


def merge_lora(encoder: torch.nn.Module) -> None:
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLinear):
                setattr(parent, name, child.merged())
