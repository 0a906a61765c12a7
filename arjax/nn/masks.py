"""Connectivity masks for autoregressive networks (MADE degrees, Germain et al. 2015).

Each unit carries a *degree*: input position ``j`` (0-based) has degree ``j + 1``, hidden units
have degrees in ``1..N-1`` and output position ``i`` has degree ``i + 1``. A weight from a unit of
degree ``a`` to a hidden unit of degree ``b`` is allowed when ``b >= a``; to an output unit of
degree ``b`` only when ``b > a``. Composing such layers makes output ``i`` depend on inputs
``j < i`` only. Masks are plain numpy arrays built from static configuration, so they enter
traced computations as constants and never become trainable parameters.
"""

from functools import lru_cache

import numpy as np

__all__ = ["input_degrees", "hidden_degrees", "made_mask"]


def input_degrees(num_positions: int, num_categories: int) -> np.ndarray:
    """Degrees of the flattened one-hot input ``[N * K]`` (position ``j`` has degree ``j + 1``).

    >>> input_degrees(3, 2).tolist()
    [1, 1, 2, 2, 3, 3]
    """
    return np.repeat(np.arange(1, num_positions + 1), num_categories)


def hidden_degrees(num_positions: int, width: int) -> np.ndarray:
    """Degrees of a hidden layer: ``1, 2, ..., N-1`` repeated cyclically over ``width`` units.

    >>> hidden_degrees(4, 5).tolist()
    [1, 2, 3, 1, 2]
    """
    return np.arange(width) % max(num_positions - 1, 1) + 1


@lru_cache(maxsize=None)
def made_mask(in_degrees: tuple[int, ...], out_degrees: tuple[int, ...], strict: bool) -> np.ndarray:
    """Mask ``[out, in]``: 1 where an input unit may feed an output unit.

    ``strict=True`` (output layer) requires ``out > in``; otherwise ``out >= in``.

    >>> made_mask((1, 2), (1, 2), strict=True).tolist()
    [[0.0, 0.0], [1.0, 0.0]]
    """
    d_in = np.asarray(in_degrees)[None, :]
    d_out = np.asarray(out_degrees)[:, None]
    allowed = d_out > d_in if strict else d_out >= d_in
    return allowed.astype(np.float32)
