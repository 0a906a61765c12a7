"""Boltzmann targets p(x) ∝ exp(-β E(x)) over sequences of tokens, and exact enumeration.

A target is an immutable `equinox.Module` with `energy(x)` for one sequence `x` of
`num_positions` tokens in `{0, …, num_categories - 1}`, and `exact_log_partition(beta)` where
an exact value is known. The enumeration routine here is shared by every target.
"""

from __future__ import annotations

import abc
import math
import operator
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

__all__ = [
    "MAX_ENUMERATION_STATES",
    "AbstractTarget",
    "EnergyTarget",
    "log_partition_by_enumeration",
    "ground_state_by_enumeration",
]

MAX_ENUMERATION_STATES = 2**24
"""Largest number of states `K**N` that exact enumeration will visit."""

_CHUNK_STATES = 2**16


class AbstractTarget(eqx.Module):
    """A Boltzmann distribution p(x) = exp(-β E(x)) / Z(β) over {0, …, K-1}^N.

    Subclasses provide `num_positions` (N), `num_categories` (K) and `energy(x)` for one
    sequence; they may override `exact_log_partition` with a closed form. The defaults here
    enumerate all K^N states, which is possible for K^N ≤ `MAX_ENUMERATION_STATES`.

    Example:
        >>> import jax.numpy as jnp
        >>> from arjax.targets import IsingSquare
        >>> target = IsingSquare(L=4)
        >>> target.energies(jnp.ones((3, 16), dtype=jnp.int32)).tolist()
        [-32.0, -32.0, -32.0]
    """

    num_positions: eqx.AbstractVar[int]
    num_categories: eqx.AbstractVar[int]

    @abc.abstractmethod
    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """Energy E(x) of one sequence of `num_positions` tokens."""

    def energies(self, x: Int[ArrayLike, "*batch N"]) -> Float[Array, "*batch"]:
        """Energies of sequences with any leading batch shape (`energy` under `jax.vmap`).

        Example:
            >>> import jax.numpy as jnp
            >>> from arjax.targets import IsingSquare
            >>> IsingSquare(L=2).energies(jnp.zeros((2, 5, 4), dtype=int)).shape
            (2, 5)
        """
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.num_positions:
            raise ValueError(
                f"x must have shape (..., {self.num_positions}) (batches of sequences of "
                f"num_positions tokens), got shape {x.shape}"
            )
        flat = x.reshape(-1, self.num_positions)
        return jax.vmap(self.energy)(flat).reshape(x.shape[:-1])

    def exact_log_partition(self, beta: float) -> float:
        """ln Z(β) = ln Σ_x exp(-β E(x)), by enumeration of all K^N states in float64.

        Example:
            >>> from arjax.targets import IsingSquare
            >>> round(IsingSquare(L=2, periodic=False).exact_log_partition(0.5), 6)
            3.297642
        """
        return log_partition_by_enumeration(self, beta)

    def exact_free_energy(self, beta: float) -> float:
        """Free energy F(β) = -ln Z(β) / β of the whole system (divide by N for per site).

        Example:
            >>> from arjax.targets import IsingSquare
            >>> round(IsingSquare(L=2, periodic=False).exact_free_energy(0.5), 6)
            -6.595284
        """
        return -self.exact_log_partition(beta) / _checked_beta(beta)

    def ground_state_energy(self) -> float:
        """Minimum energy min_x E(x), by enumeration of all K^N states in float64.

        Example:
            >>> from arjax.targets import IsingSquare
            >>> IsingSquare(L=3).ground_state_energy()
            -18.0
        """
        return ground_state_by_enumeration(self)[0]


class EnergyTarget(AbstractTarget):
    """A target defined by a user Hamiltonian `energy_fn(x: Int[N]) -> Float[]`.

    `energy_fn` is static (part of the tree structure), so it should be a plain, hashable
    Python function; couplings it needs can be closed over. `exact_log_partition` enumerates
    all `num_categories ** num_positions` states (at most `MAX_ENUMERATION_STATES`).

    Example:
        >>> import jax.numpy as jnp
        >>> from arjax.targets import EnergyTarget
        >>> chain = EnergyTarget(
        ...     lambda x: -jnp.sum((2 * x[1:] - 1) * (2 * x[:-1] - 1)),
        ...     num_positions=3, num_categories=2)
        >>> float(chain.energy(jnp.array([1, 1, 0])))
        0.0
        >>> round(chain.exact_log_partition(1.0), 6)  # ln[2 (2 cosh 1)^2]
        2.947003
    """

    energy_fn: Callable[[Int[Array, " N"]], Float[Array, ""]] = eqx.field(static=True)
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(
        self,
        energy_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
        num_positions: int,
        num_categories: int,
    ):
        if not callable(energy_fn):
            raise TypeError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
        self.energy_fn = energy_fn
        self.num_positions = _checked_int("num_positions", num_positions, minimum=1)
        self.num_categories = _checked_int("num_categories", num_categories, minimum=2)

    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """E(x) = energy_fn(x) for one sequence of `num_positions` tokens."""
        x = _checked_tokens(x, self.num_positions)
        e = jnp.asarray(self.energy_fn(x))
        if e.shape != ():
            raise ValueError(f"energy_fn must return a scalar, got shape {e.shape}")
        if not jnp.issubdtype(e.dtype, jnp.inexact):
            e = e.astype(jnp.result_type(float))
        return e


def log_partition_by_enumeration(target: AbstractTarget, beta: float) -> float:
    """ln Z(β) = logsumexp_x (-β E(x)) over all K^N states, computed in float64.

    States are visited in jitted chunks of at most 2^16, so memory stays bounded; floating
    arrays in `target` are promoted to float64 first. Raises ValueError when K^N exceeds
    `MAX_ENUMERATION_STATES`.

    Example:
        >>> from arjax.targets import IsingSquare, log_partition_by_enumeration
        >>> round(log_partition_by_enumeration(IsingSquare(L=2), 0.3), 6)
        3.533038
    """
    beta = _checked_beta(beta)
    log_z, _, _ = _chunk_statistics(target, beta)
    top = np.max(log_z)
    return float(top + np.log(np.sum(np.exp(log_z - top))))


def ground_state_by_enumeration(target: AbstractTarget) -> tuple[float, int]:
    """(E_0, g): the minimum energy over all K^N states and how many states attain it.

    Energies are computed in float64; states within 16·N·eps·(1 + |E_0|) of E_0 count as
    degenerate. Raises ValueError when K^N exceeds `MAX_ENUMERATION_STATES`.

    Example:
        >>> from arjax.targets import IsingSquare, ground_state_by_enumeration
        >>> ground_state_by_enumeration(IsingSquare(L=4))
        (-32.0, 2)
    """
    _, e_min, count = _chunk_statistics(target, 1.0)
    e0 = float(np.min(e_min))
    tol = _degeneracy_tolerance(e0, target.num_positions)
    return e0, int(np.sum(count[e_min <= e0 + tol]))


def _chunk_statistics(target: AbstractTarget, beta: float) -> tuple[np.ndarray, ...]:
    num_states = _checked_num_states(target.num_positions, target.num_categories)
    chunk = min(num_states, target.num_categories ** _digits_per_chunk(target.num_categories))
    with jax.enable_x64(True):
        target64 = jax.tree.map(_as_float64, target)
        stats = _chunk_statistics_jit(target64, jnp.float64(beta), chunk, num_states // chunk)
        return tuple(np.asarray(s) for s in stats)


@eqx.filter_jit
def _chunk_statistics_jit(target, beta, chunk, num_chunks):
    n, k = target.num_positions, target.num_categories
    place_values = k ** jnp.arange(n - 1, -1, -1)

    def one_chunk(c):
        index = c * chunk + jnp.arange(chunk)
        x = (index[:, None] // place_values) % k
        e = jax.vmap(target.energy)(x).astype(jnp.float64)
        e_min = jnp.min(e)
        count = jnp.sum(e <= e_min + _degeneracy_tolerance(e_min, n))
        return jax.scipy.special.logsumexp(-beta * e), e_min, count

    return jax.lax.map(one_chunk, jnp.arange(num_chunks))


def _degeneracy_tolerance(e_min, num_positions):
    return 16 * num_positions * np.finfo(np.float64).eps * (1.0 + abs(e_min))


def _digits_per_chunk(k: int) -> int:
    return max(1, int(math.log(_CHUNK_STATES) / math.log(k) + 1e-9))


def _as_float64(leaf):
    if eqx.is_inexact_array(leaf):
        return leaf.astype(jnp.float64)
    return leaf


def _checked_num_states(n: int, k: int) -> int:
    num_states = k**n
    if num_states > MAX_ENUMERATION_STATES:
        raise ValueError(
            f"exact enumeration needs num_categories ** num_positions = {k}**{n} ≤ "
            f"2**24 = {MAX_ENUMERATION_STATES} states; this target is too large"
        )
    return num_states


def _checked_beta(beta: float) -> float:
    try:
        value = float(beta)
    except TypeError as err:
        raise TypeError(
            f"beta must be a concrete real number (not traced inside jit), got {beta!r}"
        ) from err
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return value


def _checked_tokens(x: ArrayLike, num_positions: int) -> Int[Array, " N"]:
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_):
        raise TypeError(f"x must hold integer tokens, got dtype {x.dtype}")
    if x.shape != (num_positions,):
        raise ValueError(
            f"x must have shape ({num_positions},) (one sequence of num_positions tokens; "
            f"batch with jax.vmap or use .energies), got shape {x.shape}"
        )
    return x


def _checked_int(name: str, value: int, *, minimum: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value
