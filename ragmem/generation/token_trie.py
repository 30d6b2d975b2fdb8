"""Continuation token sequences merged into a trie, so the generator scores them all in
one forward pass (``Generator.continuation_logprobs``), shared prefixes run once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# Most tokens run through the model in one scoring forward; more are split by continuation.
MAX_TREE_TOKENS = 512


@dataclass(frozen=True)
class TokenTrie:
    """Token sequences merged on shared prefixes: one node per distinct prefix, so a
    prefix shared by many continuations (``the City``, ``the City and ...``) is run once.

        >>> trie = TokenTrie.build([[5, 6], [5, 7], [8]])
        >>> trie.tokens, trie.parents, trie.depths, trie.paths
        ((5, 6, 7, 8), (-1, 0, 0, -1), (0, 1, 1, 0), ((0, 1), (0, 2), (3,)))

    A parent of -1 is the prompt itself.
    """

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    depths: tuple[int, ...]
    paths: tuple[tuple[int, ...], ...]  # per sequence: the node of each of its tokens

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> TokenTrie:
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        children: dict[tuple[int, int], int] = {}
        paths = []
        for sequence in sequences:
            node, path = -1, []
            for depth, token in enumerate(sequence):
                key = (node, int(token))
                if key not in children:
                    children[key] = len(tokens)
                    tokens.append(int(token))
                    parents.append(node)
                    depths.append(depth)
                node = children[key]
                path.append(node)
            paths.append(tuple(path))
        return cls(tuple(tokens), tuple(parents), tuple(depths), tuple(paths))

    def ancestry(self) -> np.ndarray:
        """(n, n) bool: ``[i, j]`` when node j is node i or one of its ancestors."""
        n = len(self.tokens)
        out = np.zeros((n, n), dtype=bool)
        for i, parent in enumerate(self.parents):  # parents come before their children
            if parent >= 0:
                out[i] = out[parent]
            out[i, i] = True
        return out


def chunks(sequences: Sequence[Sequence[int]]) -> Iterator[list[int]]:
    """Indices of ``sequences`` in runs of at most MAX_TREE_TOKENS tokens (at least one)."""
    chunk: list[int] = []
    size = 0
    for i, sequence in enumerate(sequences):
        if chunk and size + len(sequence) > MAX_TREE_TOKENS:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += len(sequence)
    if chunk:
        yield chunk


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many first items all of ``sequences`` share."""
    if not sequences:
        return 0
    n = 0
    for items in zip(*sequences, strict=False):
        if any(x != items[0] for x in items[1:]):
            break
        n += 1
    return n
