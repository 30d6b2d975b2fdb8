"""Token trie: continuations merged on shared prefixes, split into forward-sized runs."""

from __future__ import annotations

from ragmem.generation.token_trie import TokenTrie, chunks, common_prefix


def test_token_trie_merges_shared_prefixes() -> None:
    trie = TokenTrie.build([[5, 6], [5, 7], [8], [5, 6, 9]])
    assert trie.tokens == (5, 6, 7, 8, 9)
    assert trie.parents == (-1, 0, 0, -1, 1)
    assert trie.depths == (0, 1, 1, 0, 2)
    assert trie.paths == ((0, 1), (0, 2), (3,), (0, 1, 4))
    ancestry = trie.ancestry()
    assert ancestry[4].tolist() == [True, True, False, False, True]
    assert ancestry[3].tolist() == [False, False, False, True, False]


def test_chunks_keep_runs_within_the_token_limit_and_never_split_a_sequence() -> None:
    sequences = [[1] * 300, [2] * 300, [3] * 100, [4] * 700]
    assert list(chunks(sequences)) == [[0], [1, 2], [3]]  # 512 tokens at most, one at least


def test_common_prefix_counts_the_shared_first_items() -> None:
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[1], [2]]) == 0 and common_prefix([]) == 0
