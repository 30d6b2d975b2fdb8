"""Shared normalisation across a question's pieces (Clark and Gardner, 2018).

A reader trained on one piece at a time learns logits that only mean something inside
that piece: its softmax is taken there. In the pipeline it reads a question's whole
working memory (several windows, most without the answer) and must say which piece's
span is best, so its raw scores have to compare across pieces. Training on groups (a
question's gold paragraph with the retrieved paragraphs that do not answer it) adds a
second loss: one softmax over the passage tokens of every piece in the group, with the
answer's tokens (in whichever pieces hold them) as the target. The per-piece loss stays,
so each piece's [CLS] no-answer probability keeps its meaning for abstention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Piece:
    """A tokenised training piece and its answer's tokens."""

    ids: list[int]
    type_ids: list[int]
    start: int  # token of the answer's start; 0 ([CLS]) when the piece does not hold it
    end: int


def group_batches(groups: Sequence[Sequence[Piece]], batch: int) -> list[list[int]]:
    """Group indices cut into batches of about ``batch`` pieces, whole groups only,
    groups sorted by their longest piece (little padding)."""
    order = sorted(range(len(groups)),
                   key=lambda g: (max(len(p.ids) for p in groups[g]), g))
    batches: list[list[int]] = [[]]
    size = 0
    for g in order:
        if size and size + len(groups[g]) > batch:
            batches.append([])
            size = 0
        batches[-1].append(g)
        size += len(groups[g])
    return [b for b in batches if b]


def passage_mask(pieces: Sequence[Piece], width: int) -> np.ndarray:
    """True on each piece's passage tokens (token type 1), where an answer may be."""
    mask = np.zeros((len(pieces), width), dtype=bool)
    for row, p in enumerate(pieces):
        mask[row, :len(p.type_ids)] = np.asarray(p.type_ids) == 1
    return mask


def shared_loss(start: torch.Tensor, end: torch.Tensor, pieces: Sequence[Piece],
                sizes: Sequence[int]) -> torch.Tensor:
    """Mean over the groups that hold an answer of the start and end cross-entropy
    taken over all the group's passage tokens; ``pieces`` are the batch's rows in
    group order and ``sizes`` the groups' piece counts."""
    mask = torch.from_numpy(passage_mask(pieces, start.shape[1]))
    losses = []
    row = 0
    for size in sizes:
        rows = range(row, row + size)
        row += size
        gold = [r for r in rows if pieces[r].start > 0]
        if not gold:
            continue  # a group without its answer teaches only the per-piece [CLS]
        for logits, label in ((start, "start"), (end, "end")):
            flat = torch.cat([logits[r][mask[r]] for r in rows])
            target = torch.stack([logits[r, getattr(pieces[r], label)] for r in gold])
            losses.append(torch.logsumexp(flat, 0) - torch.logsumexp(target, 0))
    if not losses:
        return start.new_zeros(())
    return torch.stack(losses).mean()
