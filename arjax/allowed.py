"""Per-position masks of allowed tokens: a static ``Bool[N, K]`` table or a prefix-dependent rule."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

__all__ = ["Allowed", "AllowedFn", "AllowedTable", "allows_dead_ends", "check_allowed", "masked_log_softmax"]

AllowedFn = Callable[[Int[Array, " N"], Int[Array, ""]], Bool[Array, " K"]]
Allowed = Bool[Array, "N K"] | AllowedFn | None


class AllowedTable(eqx.Module):
    """A static ``Bool[N, K]`` table used as a rule ``allowed(x, i) = table[i]``."""

    table: Bool[Array, "N K"]

    def __call__(self, x: Int[Array, " N"], i: Int[Array, ""]) -> Bool[Array, " K"]:
        del x
        return self.table[i]


def check_allowed(allowed, num_positions: int, num_categories: int | None) -> AllowedFn | None:
    """Validate ``allowed`` and return it as a rule ``allowed(x, i) -> Bool[K]`` (or ``None``).

    ``K`` is the largest vocabulary of the net's token positions (rows of other positions are
    ignored). A table must be boolean with shape ``(N, K)`` and, when its values are known (not traced),
    allow at least one token in every row. A callable is returned unchanged; its rows are checked
    when it is evaluated (``masked_log_softmax`` raises inside ``jit`` on an empty row), unless it
    declares ``allows_dead_ends = True`` (see ``allows_dead_ends``).

    >>> rule = check_allowed(jnp.array([[True, False], [True, True]]), 2, 2)
    >>> rule(jnp.array([0, 0]), 1).tolist()
    [True, True]
    """
    if allowed is None:
        return None
    if num_categories is None:
        raise ValueError("allowed restricts tokens, but this net has no token (Categorical) positions")
    if isinstance(allowed, AllowedTable):
        return allowed
    if callable(allowed):
        return allowed
    table = jnp.asarray(allowed)
    if table.dtype != jnp.bool_:
        raise TypeError(
            f"allowed must be a boolean array of shape ({num_positions}, {num_categories}) or a "
            f"callable allowed(x, i) -> Bool[K], got an array of dtype {table.dtype}"
        )
    if table.shape != (num_positions, num_categories):
        raise ValueError(
            f"allowed must have shape (num_positions, num_categories) = ({num_positions}, "
            f"{num_categories}) to match the net, got shape {table.shape}"
        )
    try:
        empty = np.flatnonzero(~np.asarray(table).any(axis=1))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        empty = np.array([], dtype=int)
    if empty.size:
        raise ValueError(f"allowed must permit at least one token per position; rows {empty.tolist()} allow none")
    return AllowedTable(table)


def allows_dead_ends(rule) -> bool:
    """Whether ``rule`` declares ``allows_dead_ends = True``: it may allow no token at a position.

    Such a row is a dead end: every token gets log-probability ``-inf`` there, the sampler writes
    token 0, and the sequence's ``log_prob`` is ``-inf`` (later positions are still drawn, their
    values meaningless). A rule without the attribute, and every ``Bool[N, K]`` table, must allow
    a token in every row. ``arjax.targets.NQueens(n).allowed`` is such a rule: a row whose columns
    are all attacked ends the placement.

    >>> allows_dead_ends(None), allows_dead_ends(lambda x, i: jnp.ones(2, bool))
    (False, False)
    """
    return getattr(rule, "allows_dead_ends", False) is True


def masked_log_softmax(
    logits: Float[Array, "... K"], allowed_row: Bool[Array, "... K"] | None, *, dead_ends: bool = False
) -> Float[Array, "... K"]:
    """Normalised log-probabilities with disallowed tokens at exactly ``-inf``.

    A row that allows no token raises inside ``jit``, or with ``dead_ends=True`` is ``-inf``
    throughout (with zero, not NaN, gradients).

    >>> masked_log_softmax(jnp.zeros(3), jnp.array([True, False, True])).tolist()
    [-0.6931471824645996, -inf, -0.6931471824645996]
    >>> masked_log_softmax(jnp.zeros(2), jnp.array([False, False]), dead_ends=True).tolist()
    [-inf, -inf]
    """
    if allowed_row is None:
        return jax.nn.log_softmax(logits, axis=-1)
    empty = ~jnp.any(allowed_row, axis=-1, keepdims=True)
    if not dead_ends:
        allowed_row = eqx.error_if(allowed_row, empty, "allowed(x, i) returned a row with no allowed token")
    normalised = jax.nn.log_softmax(jnp.where(allowed_row | empty, logits, -jnp.inf), axis=-1)
    return jnp.where(allowed_row, normalised, -jnp.inf)
