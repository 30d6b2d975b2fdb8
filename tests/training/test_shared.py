"""Shared normalisation: the loss over a question's pieces, and batches of whole groups."""

from __future__ import annotations

import math

import torch

from ragmem.training.shared import Piece, group_batches, passage_mask, shared_loss


def piece(length: int, start: int = 0, end: int = 0) -> Piece:
    """[CLS] + 2 question tokens + [SEP] (type 0), then the passage (type 1)."""
    return Piece(list(range(length)), [0] * 4 + [1] * (length - 4), start, end)


def test_the_loss_is_one_softmax_over_every_piece_of_the_group() -> None:
    pieces = [piece(7, start=5, end=6), piece(6)]
    start = torch.tensor([[9.0, 0, 0, 0, 1, 2, 0], [9.0, 0, 0, 0, 3, 0, -1e4]])
    end = torch.zeros_like(start)
    loss = shared_loss(start, end, pieces, [2])
    # Passage tokens: 1, 2, 0 (gold piece: the answer starts on the 2) and 3, 0; the
    # [CLS] (9) and the question never take part.
    s = -(2 - math.log(sum(math.exp(x) for x in (1, 2, 0, 3, 0))))
    e = -(0 - math.log(3 + 2))
    assert math.isclose(float(loss), (s + e) / 2, rel_tol=1e-6)


def test_a_negative_pieces_tokens_are_pushed_down_and_groups_without_answer_add_nothing() -> None:
    pieces = [piece(6, start=4, end=4), piece(6), piece(6)]
    start = torch.zeros((3, 6), requires_grad=True)
    end = torch.zeros((3, 6))
    shared_loss(start, end, pieces, [2, 1]).backward()
    assert start.grad is not None
    assert float(start.grad[0, 4]) < 0 < float(start.grad[1, 4])  # gold up, negative down
    assert float(start.grad[2].abs().sum()) == 0  # the answerless group: no shared loss
    assert float(shared_loss(start, end, pieces[1:], [1, 1])) == 0


def test_batches_hold_whole_groups_sorted_by_length() -> None:
    groups = [[piece(10)] * 3, [piece(5)], [piece(8)] * 2, [piece(6)] * 4]
    batches = group_batches(groups, batch=4)
    assert sorted(g for b in batches for g in b) == [0, 1, 2, 3]
    assert batches == [[1], [3], [2], [0]]  # 1+4 > 4 pieces: a group never splits
    assert passage_mask([piece(6)], 8).tolist() == [[False] * 4 + [True] * 2 + [False] * 2]
