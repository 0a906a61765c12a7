"""Exact ancestral sampling: one ``lax.scan`` over positions, ``vmap`` over sequences.

Two paths give the same samples for the same key. The generic path reruns ``net(x)`` at every
position (N network passes per sequence). The cached path uses a net's ``init_cache`` /
``decode_step`` pair and costs one incremental step per position; it is chosen automatically when
the net provides it. A sequence's key gives its uniform numbers up front: ``u_i`` per position
(``U`` of them when a family needs more, e.g. a mixture's component and quantile), and position
``i`` takes the value that its family's ``sample(θ_i, u_i)`` maps them to (inverse-CDF sampling:
a token where ``u_i`` falls in the cumulative distribution of its conditional), so the choice of
path never changes the random numbers.
"""

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.allowed import Allowed, AllowedFn, allows_dead_ends, check_allowed
from arjax.families.layout import net_layout
from arjax.parallel import check_batch_divisible, constrain_batch

__all__ = ["sample", "sample_and_log_prob", "has_fast_path", "check_sample_shape", "split_context"]


def sample_and_log_prob(
    net: eqx.Module,
    key: PRNGKeyArray,
    sample_shape: Sequence[int] = (),
    *,
    context: Float[Array, "..."] | None = None,
    allowed: Allowed = None,
    cached: bool | None = None,
    sharding: NamedSharding | None = None,
) -> tuple[Int[Array, "*S N"], Float[Array, " *S"]]:
    """Draw exact samples of ``net``'s distribution and their log-probabilities.

    Args:
        net: an autoregressive net (``net(x, context) -> logits [N, K]``).
        key: a ``jax.random`` key.
        sample_shape: tuple of ints; the output has shape ``sample_shape + batch_shape + (N,)``,
            where ``batch_shape`` are the leading dimensions of ``context`` beyond the net's
            ``context_shape``.
        context: conditioning input of shape ``batch_shape + net.context_shape``.
        allowed: ``Bool[N, K]`` table or rule ``allowed(x, i) -> Bool[K]`` reading ``x[:i]``.
        cached: ``None`` picks the net's ``decode_step`` fast path when it has one; ``True``
            requires it; ``False`` forces the generic N-pass path.
        sharding: split the sequences over devices (``arjax.parallel.batch_sharding(mesh)``);
            the samples are the same as without it.

    Returns:
        ``(x, log_prob)``: int32 tokens (float values for nets with real, circular or positive
        positions) and their exact log-probabilities.

    Example:
        >>> import jax
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=5, num_categories=2, key=jax.random.key(0))
        >>> x, lp = sample_and_log_prob(net, jax.random.key(1), (3,))
        >>> x.shape, lp.shape
        ((3, 5), (3,))
    """
    sample_shape = check_sample_shape(sample_shape)
    rule = check_allowed(allowed, net.num_positions, net_layout(net).categorical_size)
    context, batch_shape = split_context(net, context)
    use_cache = _choose_path(net, cached)
    shape = sample_shape + batch_shape
    check_batch_divisible("the number of sequences", math.prod(shape), sharding)
    return _sample_and_log_prob(net, key, shape, context, rule, use_cache, sharding)


def sample(
    net: eqx.Module,
    key: PRNGKeyArray,
    sample_shape: Sequence[int] = (),
    *,
    context: Float[Array, "..."] | None = None,
    allowed: Allowed = None,
    cached: bool | None = None,
    sharding: NamedSharding | None = None,
) -> Int[Array, "*S N"]:
    """Exact samples only; see ``sample_and_log_prob``.

    Samples carry no gradient (``sample`` is not a reparameterised draw), so the net and context are read through
    ``stop_gradient``: under ``jax.grad`` the sampling pass is then not linearised (which would
    keep its per-step activations and cost several times the pass itself).

    >>> import jax
    >>> from arjax.nn import MeanField
    >>> sample(MeanField(4, 3, key=jax.random.key(0)), jax.random.key(1), (2,)).shape
    (2, 4)
    """
    net, context = jax.tree.map(lambda leaf: lax.stop_gradient(leaf) if eqx.is_inexact_array(leaf) else leaf,
                                (net, context))  # fmt: skip
    return sample_and_log_prob(
        net, key, sample_shape, context=context, allowed=allowed, cached=cached, sharding=sharding
    )[0]


def has_fast_path(net) -> bool:
    """Whether ``net`` provides ``init_cache`` and ``decode_step``."""
    return callable(getattr(net, "init_cache", None)) and callable(getattr(net, "decode_step", None))


def check_sample_shape(sample_shape) -> tuple[int, ...]:
    """Return ``sample_shape`` as a tuple, or raise ``TypeError`` naming the argument."""
    if isinstance(sample_shape, (tuple, list)) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sample_shape
    ):
        return tuple(sample_shape)
    raise TypeError(f"sample_shape must be a tuple of non-negative ints, e.g. (1000,), got {sample_shape!r}")


def split_context(net, context) -> tuple[Array | None, tuple[int, ...]]:
    """Check ``context`` against ``net.context_shape``; return it and its batch shape."""
    context_shape = getattr(net, "context_shape", None)
    if context is None:
        if context_shape is not None:
            raise ValueError(f"context of shape (..., *{context_shape}) is required by this net, got None")
        return None, ()
    if context_shape is None:
        raise ValueError("context was given, but the net takes none (its context_shape is None)")
    context = jnp.asarray(context)
    split = context.ndim - len(context_shape)
    if split < 0 or context.shape[split:] != tuple(context_shape):
        raise ValueError(f"context must have shape batch_shape + {tuple(context_shape)}, got shape {context.shape}")
    return context, context.shape[:split]


@eqx.filter_jit
def _sample_and_log_prob(net, key, shape, context, rule, use_cache, sharding):
    one = _sample_one_cached if use_cache else _sample_one_generic
    if shape == ():  # one sequence, with the key the batched path gives its only row; no size-1 batch axis
        return one(net, jax.random.split(key, 1)[0], context, rule)
    size = math.prod(shape)
    keys = constrain_batch(jax.random.split(key, size), sharding)
    if context is None:
        x, log_prob = jax.vmap(lambda k: one(net, k, None, rule))(keys)
    else:
        context_shape = tuple(net.context_shape)
        flat = jnp.broadcast_to(context, shape + context_shape).reshape((size,) + context_shape)
        flat = constrain_batch(flat, sharding)
        x, log_prob = jax.vmap(lambda k, c: one(net, k, c, rule))(keys, flat)
    return x.reshape(shape + (net.num_positions,)), log_prob.reshape(shape)


def _sample_one_generic(net, key, context, rule: AllowedFn | None):
    layout = net_layout(net)

    def step(carry, inputs):
        x, log_prob = carry
        i, uniform = inputs
        value, log_p = layout.sample_at(
            i, net(x, context)[i], uniform, None if rule is None else rule(x, i), dead_ends=allows_dead_ends(rule)
        )
        return (x.at[i].set(value), log_prob + log_p), None

    init = (jnp.zeros(net.num_positions, layout.value_dtype), jnp.zeros((), _logit_dtype(net, context)))
    (x, log_prob), _ = lax.scan(step, init, _positions_and_uniforms(net, key))
    return x, log_prob


def _sample_one_cached(net, key, context, rule: AllowedFn | None):
    layout = net_layout(net)

    def step(carry, inputs):
        cache, previous, x, log_prob = carry
        i, uniform = inputs
        params, cache = net.decode_step(cache, i, previous)
        value, log_p = layout.sample_at(
            i, params, uniform, None if rule is None else rule(x, i), dead_ends=allows_dead_ends(rule)
        )
        return (cache, value, x.at[i].set(value), log_prob + log_p), None

    cache = net.init_cache(context)
    x0 = jnp.zeros(net.num_positions, layout.value_dtype)
    init = (cache, jnp.zeros((), layout.value_dtype), x0, jnp.zeros((), _logit_dtype(net, context)))
    (_, _, x, log_prob), _ = lax.scan(step, init, _positions_and_uniforms(net, key))
    return x, log_prob


def _positions_and_uniforms(net, key) -> tuple[Int[Array, " N"], Float[Array, "N ..."]]:
    """Position indices and each position's uniforms: ``[N]`` when every family needs one, else ``[N, U]``."""
    count = net_layout(net).num_uniforms
    shape = (net.num_positions,) if count == 1 else (net.num_positions, count)
    return jnp.arange(net.num_positions), jax.random.uniform(key, shape)


def _logit_dtype(net, context):
    x = jnp.zeros(net.num_positions, net_layout(net).value_dtype)
    return jax.eval_shape(lambda n, x, c: n(x, c), net, x, context).dtype


def _choose_path(net, cached: bool | None) -> bool:
    if cached is None:
        return has_fast_path(net)
    if cached and not has_fast_path(net):
        raise ValueError(f"cached=True, but {type(net).__name__} has no init_cache/decode_step fast path")
    return bool(cached)
