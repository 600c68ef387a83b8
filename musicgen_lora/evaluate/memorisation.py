"""Memorisation: how much of a generated clip's codes occurs verbatim in the training codes."""

from __future__ import annotations

import numpy as np


def longest_common_run(generated: np.ndarray, corpus: list[np.ndarray], cache: dict | None = None) -> int:
    """Length of the longest run of consecutive frames of ``generated`` that occurs verbatim in one corpus item.

    Args:
        generated: (T, width) integer tokens (a frame per row; width = codebooks compared jointly).
        corpus: items of shape (T_i, width).
        cache: dict reused across calls with the same corpus (the corpus' n-grams per length).
    """
    cache = {} if cache is None else cache

    def grams(tokens: np.ndarray, length: int) -> list[bytes]:
        if len(tokens) < length:
            return []
        windows = np.lib.stride_tricks.sliding_window_view(np.ascontiguousarray(tokens), length, axis=0)
        flat = np.ascontiguousarray(windows.reshape(windows.shape[0], -1))
        return [row.tobytes() for row in flat]

    def occurs(length: int) -> bool:
        if length not in cache:
            cache[length] = {g for item in corpus for g in grams(item, length)}
        return any(g in cache[length] for g in grams(generated, length))

    low, high = 0, len(generated)
    while low < high:  # the longest shared length L: every shorter length is shared too
        middle = (low + high + 1) // 2
        if occurs(middle):
            low = middle
        else:
            high = middle - 1
    return low
