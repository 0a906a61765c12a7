"""The Sherrington–Kirkpatrick spin glass."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from arjax.targets.energy import AbstractTarget, _checked_int, _checked_tokens

__all__ = ["SherringtonKirkpatrick"]


class SherringtonKirkpatrick(AbstractTarget):
    """Sherrington–Kirkpatrick model: E(s) = -Σ_{i<j} J_ij s_i s_j = -½ sᵀJs, no field.

    J is symmetric with zero diagonal and J_ij ~ N(0, 1/N) for i < j, the convention of
    Wu, Wang & Zhang, PRL 122, 080602 (2019) (VAN), whose energy -½ sᵀJs is the same sum.
    β_c = 1 in these units. `exact_log_partition` and `ground_state_energy` enumerate all
    2^N states in float64 (N ≤ 24; N = 20 takes seconds).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax.targets import SherringtonKirkpatrick
        >>> target = SherringtonKirkpatrick(10, key=jax.random.key(0))
        >>> target.couplings.shape
        (10, 10)
        >>> bool(target.energy(jnp.zeros(10, dtype=int)) == target.energy(jnp.ones(10, dtype=int)))
        True
    """

    couplings: Float[Array, "N N"]
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(self, num_spins: int, *, key: PRNGKeyArray):
        n = _checked_int("num_spins", num_spins, minimum=2)
        upper = jnp.triu(jax.random.normal(key, (n, n)) / math.sqrt(n), k=1)
        self.couplings = upper + upper.T
        self.num_positions = n
        self.num_categories = 2

    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """E(s) = -½ sᵀJs with s = 2x - 1, for one configuration of N tokens."""
        s = 2 * _checked_tokens(x, self.num_positions).astype(self.couplings.dtype) - 1
        return -0.5 * s @ self.couplings @ s
