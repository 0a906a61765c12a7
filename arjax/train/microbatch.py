"""The value and gradient of a batch-mean loss, accumulated over microbatches in one ``lax.scan``."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from arjax.parallel import constrain_batch
from arjax.train.loop import check_count

__all__ = ["value_and_grad_by_microbatch"]


def value_and_grad_by_microbatch(
    loss: Callable[[PyTree, PyTree], Float[Array, ""]],
    params: PyTree,
    batch: PyTree,
    *,
    microbatch_size: int | None,
    sharding: Any = None,
) -> tuple[Float[Array, ""], PyTree]:
    r"""``jax.value_and_grad(loss)(params, batch)`` for a ``loss`` that is a mean over the batch.

    With ``microbatch_size`` ``b`` the batch of ``B`` rows (the leading axis of every leaf of
    ``batch``; ``None`` leaves are passed through) is cut into ``B / b`` microbatches, rows
    ``k, k + B/b, k + 2B/b, …`` in microbatch ``k``; one ``lax.scan`` adds up their values and
    gradients and divides by their number. For a mean loss that is the same value and gradient
    up to rounding, but each pass touches ``B / b`` times less memory: a Transformer's
    activations then stay in the CPU's caches (see docs/performance.md). ``None`` takes the
    whole batch in one pass. ``sharding`` (a batch sharding, see ``arjax.parallel``) constrains
    the batch and each microbatch, whose rows are spread evenly over the devices when ``b`` is a
    multiple of their number.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> loss = lambda w, x: jnp.mean((x * w) ** 2)
        >>> x = jnp.arange(8.0)
        >>> value, grad = value_and_grad_by_microbatch(loss, 2.0, x, microbatch_size=2)
        >>> bool(jnp.allclose(grad, jax.grad(loss)(2.0, x)))
        True
    """
    batch = constrain_batch(batch, sharding)
    if microbatch_size is None:
        return jax.value_and_grad(loss)(params, batch)
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(batch)}
    if len(sizes) != 1:
        raise ValueError(f"every leaf of batch must have the same number of rows, got {sorted(sizes)}")
    (size,) = sizes
    check_microbatch_size(microbatch_size, size)
    count = size // microbatch_size

    def split(leaf):
        return jnp.swapaxes(leaf.reshape(microbatch_size, count, *leaf.shape[1:]), 0, 1)

    def add(total, microbatch):
        value, grads = jax.value_and_grad(loss)(params, constrain_batch(microbatch, sharding))
        return jax.tree.map(jnp.add, total, (value, grads)), None

    microbatches = jax.tree.map(split, batch)
    value = jax.eval_shape(loss, params, jax.tree.map(lambda leaf: leaf[0], microbatches))
    zero = (jnp.zeros(value.shape, value.dtype), jax.tree.map(jnp.zeros_like, params))
    total, _ = jax.lax.scan(add, zero, microbatches)
    return jax.tree.map(lambda leaf: leaf / count, total)


def check_microbatch_size(microbatch_size, batch_size: int) -> None:
    """Raise ``ValueError`` unless ``microbatch_size`` is an integer ≥ 1 that divides ``batch_size``."""
    check_count("microbatch_size", microbatch_size, minimum=1)
    if batch_size % microbatch_size:
        raise ValueError(f"microbatch_size={microbatch_size} must divide the batch size {batch_size}")
