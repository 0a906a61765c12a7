"""The n-queens problem as a target: one queen per row, token = the queen's column."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from arjax.targets.energy import AbstractTarget, _checked_int, _checked_tokens

__all__ = ["NQueens", "NQUEENS_SOLUTION_COUNTS"]

NQUEENS_SOLUTION_COUNTS = {
    1: 1, 2: 0, 3: 0, 4: 2, 5: 10, 6: 4, 7: 40, 8: 92, 9: 352, 10: 724,
    11: 2680, 12: 14200, 13: 73712, 14: 365596,
}
"""Number of ways to place n non-attacking queens on an n×n board (OEIS A000170), n = 1…14."""


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
        """The number of solutions from OEIS A000170 (n ≤ 14), else None."""
        return NQUEENS_SOLUTION_COUNTS.get(self.n)

    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """Number of attacking pairs of queens: same column or same diagonal."""
        x = _checked_tokens(x, self.n)
        i, j = np.triu_indices(self.n, 1)
        gap = jnp.abs(x[i] - x[j])
        return jnp.sum((gap == 0) | (gap == j - i)).astype(jnp.result_type(float))

    def is_valid(self, x: Int[ArrayLike, " N"]) -> Bool[Array, ""]:
        """Whether no two queens attack each other."""
        return self.energy(x) == 0

    def reward(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """1.0 for a solution, 0.0 otherwise."""
        return self.is_valid(x).astype(jnp.result_type(float))
