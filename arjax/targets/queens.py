"""The n-queens problem as a target: one queen per row, token = the queen's column."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from arjax.targets.energy import AbstractTarget, _checked_int, _checked_tokens

__all__ = [
    "NQueens", "NQUEENS_SOLUTION_COUNTS", "NonAttacking", "BoardState", "exact_count", "MAX_BITMASK_N",
    "bits_to_bool", "free_counts_ahead", "rows_exist",
]  # fmt: skip

NQUEENS_SOLUTION_COUNTS = {
    1: 1, 2: 0, 3: 0, 4: 2, 5: 10, 6: 4, 7: 40, 8: 92, 9: 352, 10: 724,
    11: 2680, 12: 14200, 13: 73712, 14: 365596, 15: 2279184, 16: 14772512, 17: 95815104,
    18: 666090624, 19: 4968057848, 20: 39029188884, 21: 314666222712, 22: 2691008701644,
    23: 24233937684440, 24: 227514171973736, 25: 2207893435808352, 26: 22317699616364044,
    27: 234907967154122528,
}  # fmt: skip
"""Number of ways to place n non-attacking queens on an n×n board (OEIS A000170), n = 1…27.

n = 27 was enumerated on FPGAs in 2016 (and confirmed on GPUs in 2025); no larger value is known.
"""

MAX_BITMASK_N = 32
"""Largest board whose rows fit the ``uint32`` bitmasks of ``BoardState``."""


def exact_count(n: int) -> int:
    """The number of solutions of the n-queens problem, from OEIS A000170 (known for n ≤ 27).

    Example:
        >>> exact_count(8), exact_count(27)
        (92, 234907967154122528)

    Raises:
        ValueError: ``n`` is not an integer ≥ 1, or no exact count is known for it.
    """
    n = _checked_int("n", n, minimum=1)
    if n not in NQUEENS_SOLUTION_COUNTS:
        raise ValueError(f"n = {n}: no exact n-queens count is known (OEIS A000170 ends at n = 27); estimate it")
    return NQUEENS_SOLUTION_COUNTS[n]


class NQueens(AbstractTarget):
    """n queens on an n×n board, one per row: ``x[i]`` is the column of the queen in row ``i``.

    ``energy(x)`` counts attacking pairs (two queens in the same column or on the same diagonal;
    rows never clash by construction), so the ground states ``E = 0`` are the solutions and
    ``exp(-βE)`` tends to the uniform distribution over them as ``β → ∞``. ``reward(x)`` is 1 for
    a solution and 0 otherwise. Uniform random placement (one queen per row) is valid with
    probability ``known_solution_count / n**n``.

    Example:
        >>> import jax.numpy as jnp
        >>> from arjax.targets import NQueens
        >>> board = NQueens(4)
        >>> float(board.energy(jnp.array([1, 3, 0, 2]))), float(board.reward(jnp.array([1, 3, 0, 2])))
        (0.0, 1.0)
        >>> float(board.energy(jnp.array([0, 1, 2, 3]))), board.known_solution_count   # one diagonal: 6 pairs
        (6.0, 2)
    """

    n: int = eqx.field(static=True)

    def __init__(self, n: int):
        self.n = _checked_int("n", n, minimum=1)

    @property
    def num_positions(self) -> int:
        return self.n

    @property
    def num_categories(self) -> int:
        return self.n

    @property
    def known_solution_count(self) -> int | None:
        """The number of solutions from OEIS A000170 (n ≤ 27), else None."""
        return NQUEENS_SOLUTION_COUNTS.get(self.n)

    @property
    def allowed(self) -> NonAttacking:
        """The rule ``allowed(x, i)``: columns of row ``i`` no queen of ``x[:i]`` attacks (dead ends allowed)."""
        return NonAttacking(self.n)

    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """Number of attacking pairs of queens: same column or same diagonal."""
        x = _checked_tokens(x, self.n)
        i, j = np.triu_indices(self.n, 1)
        gap = jnp.abs(x[i] - x[j])
        return jnp.sum((gap == 0) | (gap == j - i)).astype(jnp.result_type(float))

    def symmetries(self, x: Int[ArrayLike, " N"]) -> Int[Array, "8 N"]:
        """The 8 images of a placement under the board's symmetry group D4 (rotations and reflections).

        Rows 0–3 are ``x``, its column mirror ``n - 1 - x``, its row mirror ``x[::-1]`` and the
        180° rotation; rows 4–7 the same for the transpose (``x`` as a permutation, inverted).
        The transpose needs one queen per column, so the images are placements only when ``x`` is
        a permutation; every image of a solution is a solution.

        Example:
            >>> import jax.numpy as jnp
            >>> NQueens(5).symmetries(jnp.array([0, 2, 4, 1, 3])).tolist()[:5]
            [[0, 2, 4, 1, 3], [4, 2, 0, 3, 1], [3, 1, 4, 2, 0], [1, 3, 0, 2, 4], [0, 3, 1, 4, 2]]
        """
        x = _checked_tokens(x, self.n)
        transposed = jnp.argsort(x).astype(x.dtype)
        images = []
        for base in (x, transposed):
            for flipped in (base, base[::-1]):
                images += [flipped, self.n - 1 - flipped]
        return jnp.stack(images)

    def is_valid(self, x: Int[ArrayLike, " N"]) -> Bool[Array, ""]:
        """Whether no two queens attack each other."""
        return self.energy(x) == 0

    def reward(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """1.0 for a solution, 0.0 otherwise."""
        return self.is_valid(x).astype(jnp.result_type(float))


class NonAttacking(eqx.Module):
    """Allowed-token rule of n-queens: ``allowed(x, i)[c]`` is True when no queen ``x[r]``, ``r < i``,
    shares column ``c`` or a diagonal with square ``(i, c)``.

    With it, ``arjax.Autoregressive(net, allowed=NonAttacking(n))`` proposes only non-attacking
    partial placements, so every complete sequence it samples is a solution. A row whose columns
    are all attacked is a dead end (``allows_dead_ends = True``): the sequence gets
    ``log_prob = -inf`` and weight 0 in ``arjax.estimators.count``, which keeps the estimate
    unbiased. With ``look_ahead=h`` a column is also ruled out when a queen there would leave one
    of the next ``h`` rows without a free column (its subtree has no solution, so estimates stay
    unbiased and fewer samples die). The plain rule with uniform logits is Knuth's (1975)
    estimator.

    ``__call__`` works for any n; the incremental form used by fast samplers — ``start()``,
    ``place(state, column)`` and ``free(state, row)`` on a ``BoardState`` of ``uint32`` bitmasks,
    the classic backtracking recurrences — needs ``n ≤ 32``.

    Example:
        >>> import jax.numpy as jnp
        >>> rule = NonAttacking(4)
        >>> rule(jnp.array([1, 0, 0, 0]), 1).tolist()   # row 1 after a queen at (0, 1)
        [False, False, False, True]
        >>> rule(jnp.array([1, 3, 0, 0]), 2).tolist()   # (2, 0) is the only free square of row 2
        [True, False, False, False]
        >>> rule(jnp.array([0, 2, 0, 0]), 2).tolist()   # a dead end
        [False, False, False, False]
        >>> NonAttacking(4, look_ahead=1)(jnp.array([0, 0, 0, 0]), 1).tolist()   # (1, 2) leaves row 2 no square
        [False, False, False, True]
    """

    n: int = eqx.field(static=True)
    look_ahead: int = eqx.field(static=True, default=0)
    allows_dead_ends: ClassVar[bool] = True

    def __init__(self, n: int, *, look_ahead: int = 0):
        self.n = _checked_int("n", n, minimum=1)
        if not isinstance(look_ahead, int) or isinstance(look_ahead, bool) or not 0 <= look_ahead <= max(n - 1, 0):
            raise ValueError(f"look_ahead must be an integer in 0..{max(n - 1, 0)} (rows ahead), got {look_ahead!r}")
        self.look_ahead = look_ahead

    def __call__(self, x: Int[Array, " N"], i: Int[Array, ""]) -> Bool[Array, " N"]:
        """Free columns of row ``i`` given the queens ``x[:i]`` (reads nothing else of ``x``)."""
        rows = jnp.arange(self.n)
        columns = jnp.arange(self.n)
        placed = rows < i
        # attacked[j, c]: some queen of a row r < i attacks square (j, c)
        gap = jnp.abs(x[:, None, None] - columns[None, None, :])
        distance = jnp.abs(rows[None, :, None] - rows[:, None, None])
        attacked = jnp.any(placed[:, None, None] & ((gap == 0) | (gap == distance)), axis=0)
        free_here = ~jnp.take(attacked, i, axis=0)
        if not self.look_ahead:
            return free_here
        ahead = rows - i  # the offset of row j from row i
        new_gap = jnp.abs(columns[:, None, None] - columns[None, None, :])  # a new queen at (i, c) attacks (j, c')
        new_attack = (new_gap == 0) | (new_gap == jnp.abs(ahead)[None, :, None])
        later_free = jnp.any(~attacked[None] & ~new_attack, axis=-1)  # [c, j]
        checked = (ahead >= 1) & (ahead <= self.look_ahead)
        return free_here & jnp.all(later_free | ~checked[None, :], axis=-1)

    def start(self) -> BoardState:
        """The empty board: no column and no diagonal taken."""
        _check_bitmask_size(self.n)
        zero = jnp.zeros((), jnp.uint32)
        return BoardState(zero, zero, zero)

    def place(self, state: BoardState, column: Int[Array, ""]) -> BoardState:
        """The state of the next row after a queen at ``column`` of the current row."""
        bit = jnp.left_shift(jnp.uint32(1), jnp.asarray(column).astype(jnp.uint32))
        full = _full_mask(self.n)
        return BoardState(state.columns | bit, ((state.down | bit) << 1) & full, (state.up | bit) >> 1)

    def free_bits(self, state: BoardState, row: Int[Array, ""]) -> Int[Array, ""]:
        """Bitmask of the allowed columns of the current row (``row`` is its index, for ``look_ahead``)."""
        free = ~(state.columns | state.down | state.up) & _full_mask(self.n)
        if not self.look_ahead:
            return free
        ahead = free_counts_ahead(state, self.n, self.look_ahead) > 0
        viable = jnp.all(ahead | ~rows_exist(row, self.n, self.look_ahead), axis=-1)
        bits = jnp.left_shift(jnp.uint32(1), jnp.arange(self.n, dtype=jnp.uint32))
        return free & jnp.sum(jnp.where(viable, bits, 0)).astype(jnp.uint32)

    def free(self, state: BoardState, row: Int[Array, ""]) -> Bool[Array, " N"]:
        """``free_bits`` as a boolean row, the same as ``self(x, row)`` for the placement that led to ``state``."""
        return bits_to_bool(self.free_bits(state, row), self.n)


def free_counts_ahead(state: BoardState, n: int, rows: int) -> Int[Array, "N T"]:
    """``free[c, t-1]``, ``t = 1…rows``: free columns of row ``t`` below once a queen takes column ``c``.

    Rows past the board count whatever the bitmasks say; mask them with ``rows_exist``.

    >>> free_counts_ahead(NonAttacking(4).start(), 4, 2).tolist()   # an empty 4×4 board
    [[2, 2], [1, 2], [1, 2], [2, 2]]
    """
    full = _full_mask(n)
    bits = jnp.left_shift(jnp.uint32(1), jnp.arange(n, dtype=jnp.uint32))
    offsets = jnp.arange(1, rows + 1, dtype=jnp.uint32)
    columns, down, up = state.columns | bits, state.down | bits, state.up | bits
    taken = columns[:, None] | (down[:, None] << offsets) | (up[:, None] >> offsets)
    return jax.lax.population_count(~taken & full).astype(jnp.int32)


def rows_exist(row: Int[Array, ""], n: int, rows: int) -> Bool[Array, " T"]:
    """Which of the ``rows`` rows below row ``row`` are on the board.

    >>> rows_exist(2, 4, 3).tolist()
    [True, False, False]
    """
    return jnp.arange(1, rows + 1) < n - row


class BoardState(NamedTuple):
    """Backtracking state before a row: ``uint32`` bitmasks over the columns of that row.

    Attributes:
        columns: columns already holding a queen.
        down: columns attacked along the ``row + 1, column + 1`` diagonals of the queens above.
        up: columns attacked along the ``row + 1, column - 1`` diagonals.
    """

    columns: Int[Array, ""]
    down: Int[Array, ""]
    up: Int[Array, ""]


def bits_to_bool(bits: Int[Array, "..."], n: int) -> Bool[Array, "... n"]:
    """The ``n`` low bits of a ``uint32`` bitmask as booleans, bit ``c`` at index ``c``.

    >>> bits_to_bool(jnp.uint32(0b0101), 4).tolist()
    [True, False, True, False]
    """
    return ((bits[..., None] >> jnp.arange(n, dtype=jnp.uint32)) & 1).astype(bool)


def _full_mask(n: int):
    return jnp.uint32((1 << n) - 1)


def _check_bitmask_size(n: int) -> None:
    if n > MAX_BITMASK_N:
        raise ValueError(f"n = {n}: the bitmask recurrences hold boards up to n = {MAX_BITMASK_N} (uint32 rows)")
