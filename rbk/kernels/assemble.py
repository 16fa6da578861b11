"""Block assembly of Gram matrices: row buckets, padding, and the symmetric fill from upper blocks."""

from __future__ import annotations

import numpy as np


def bucket(n: int, block: int, least: int = 8) -> int:
    """Rows per block: ``block`` for large inputs, else the next power of two (>= ``least``),
    so that inputs of nearby sizes share a compilation."""
    return min(block, max(least, 1 << (n - 1).bit_length()))


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` padded to ``size`` rows by repeating its first row."""
    if x.shape[0] == size:
        return x
    return np.concatenate([x, np.repeat(x[:1], size - x.shape[0], axis=0)], axis=0)


def blocks(n: int, b: int) -> list[tuple[int, int]]:
    """``[(i0, i1), ...]``: ``range(n)`` cut into pieces of ``b``."""
    return [(i, min(i + b, n)) for i in range(0, n, b)]


def assemble(block_fn, x1: np.ndarray, x2: np.ndarray | None, gets, block: int) -> dict[str, np.ndarray]:
    """Fill ``(n1, n2)`` float64 arrays block by block (upper blocks only when ``x2 is None``).

    ``block_fn(xb1, xb2, diag) -> {get: (b1, b2)}``; blocks are padded to a bucketed size so
    that each shape compiles once. Diagonal blocks are symmetrised, so a Gram is exactly symmetric.
    """
    same = x2 is None
    x2_ = x1 if same else x2
    n1, n2 = x1.shape[0], x2_.shape[0]
    b1, b2 = bucket(n1, block, 32), bucket(n2, block, 32)  # closed forms: padding is cheap
    if same:
        b1 = b2 = max(b1, b2)
    out = {g: np.empty((n1, n2), np.float64) for g in gets}
    for i0, i1 in blocks(n1, b1):
        xb1 = pad_rows(x1[i0:i1], b1)
        for j0, j1 in blocks(n2, b2):
            if same and j0 < i0:
                continue
            diag = same and i0 == j0
            xb2 = xb1 if diag else pad_rows(x2_[j0:j1], b2)
            res = block_fn(xb1, xb2, diag)
            for g in gets:
                r = np.asarray(res[g], np.float64)[: i1 - i0, : j1 - j0]
                if diag:
                    r = 0.5 * (r + r.T)
                out[g][i0:i1, j0:j1] = r
                if same and not diag:
                    out[g][j0:j1, i0:i1] = r.T
    return out
