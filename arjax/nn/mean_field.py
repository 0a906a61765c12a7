"""Naive mean field: a factorised distribution written as an autoregressive net."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.nn.inputs import as_one_hot, check_context, check_int, scaled_normal

__all__ = ["MeanField"]


class MeanField(eqx.Module):
    r"""Factorised net: ``q(x) = Π_i q_i(x_i)``; row ``i`` depends on no token at all.

    The naive-mean-field baseline of variational statistical physics, with the same interface as
    every other net (so it fits ``Autoregressive``, the objectives and the samplers). An optional
    ``context_size`` makes the logits an affine function of a context vector.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = MeanField(num_positions=3, num_categories=2, key=jax.random.key(0))
        >>> net(jnp.array([1, 0, 1])).shape
        (3, 2)
    """

    logits: Array
    context_weight: Array | None
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)
    context_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        num_positions: int,
        num_categories: int,
        *,
        context_size: int | None = None,
        init_scale: float = 0.1,
        dtype: DTypeLike | None = None,
        key: PRNGKeyArray,
    ):
        check_int("num_positions", num_positions)
        check_int("num_categories", num_categories)
        if context_size is not None:
            check_int("context_size", context_size)
        self.num_positions = num_positions
        self.num_categories = num_categories
        self.context_shape = None if context_size is None else (context_size,)
        dtype = jnp.result_type(float) if dtype is None else dtype
        scales = [np.full((num_positions, num_categories), init_scale)]
        if context_size is not None:
            scales.append(np.full((num_positions * num_categories, context_size), 1 / np.sqrt(context_size)))
        arrays = scaled_normal(key, scales, dtype)
        self.logits = arrays[0]
        self.context_weight = arrays[1] if context_size is not None else None

    def __call__(
        self, x: Int[Array, " N"] | Float[Array, "N K"], context: Float[Array, " C"] | None = None
    ) -> Float[Array, "N K"]:
        """Logits ``[N, K]``, the same for every ``x``."""
        as_one_hot(x, self.num_positions, self.num_categories, self.logits.dtype)
        return self._logits(check_context(context, self.context_shape))

    def init_cache(self, context: Float[Array, " C"] | None = None) -> Float[Array, "N K"]:
        """The cache of the fast path is the full logits table."""
        return self._logits(check_context(context, self.context_shape))

    def decode_step(
        self, cache: Float[Array, "N K"], i: Int[Array, ""], token: Int[Array, ""]
    ) -> tuple[Float[Array, " K"], Float[Array, "N K"]]:
        """Logits of position ``i``; ``token`` (the previous one) is irrelevant here."""
        del token
        return cache[i], cache

    def _logits(self, context: Array | None) -> Float[Array, "N K"]:
        if context is None:
            return self.logits
        shift = (self.context_weight @ context).reshape(self.num_positions, self.num_categories)
        return self.logits + shift
