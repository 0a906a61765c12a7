"""Input handling shared by the networks: tokens or one-hot rows, checked at trace time."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = ["as_one_hot", "as_values", "check_context", "check_int", "check_decode_step", "scaled_normal"]


def as_one_hot(
    x: Int[Array, " N"] | Float[Array, "N K"], num_positions: int, num_categories: int, dtype
) -> Float[Array, "N K"]:
    """One-hot rows ``[N, K]`` from tokens ``Int[N]``; float ``[N, K]`` rows pass through.

    Float rows let ``jax.jacfwd`` differentiate a net with respect to its input, which is how
    ``arjax.testing.check_autoregressive`` looks for leaks.

    >>> as_one_hot(jnp.array([0, 2]), 2, 3, jnp.float32).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer):
        if x.shape != (num_positions,):
            raise ValueError(
                f"x must have shape ({num_positions},) (one sequence of tokens; batch with "
                f"jax.vmap), got shape {x.shape}"
            )
        return jax.nn.one_hot(x, num_categories, dtype=dtype)
    if jnp.issubdtype(x.dtype, jnp.floating):
        if x.shape != (num_positions, num_categories):
            raise ValueError(
                f"float x must be one-hot rows of shape ({num_positions}, {num_categories}), "
                f"got shape {x.shape}; pass integer tokens of shape ({num_positions},) instead"
            )
        return x.astype(dtype)
    raise TypeError(f"x must hold integer tokens, got dtype {x.dtype}")


def as_values(x, num_positions: int, dtype) -> Float[Array, " N"]:
    """One sequence of values ``[N]`` (reals, or tokens stored as whole numbers) as ``dtype``.

    >>> as_values(jnp.array([1, 0]), 2, jnp.float32).tolist()
    [1.0, 0.0]
    """
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)):
        raise TypeError(f"x must hold real values (tokens as whole numbers), got dtype {x.dtype}")
    if x.shape != (num_positions,):
        raise ValueError(
            f"x must have shape ({num_positions},) (one sequence; batch with jax.vmap), got shape {x.shape}"
        )
    return x.astype(dtype)


def check_context(context, context_shape: tuple[int, ...] | None):
    """Check one context against the shape a net was built for; returns it as an array or None."""
    if context_shape is None:
        if context is not None:
            raise ValueError("context was given, but this net was built without context_size")
        return None
    if context is None:
        raise ValueError(f"context of shape {context_shape} is required by this net, got None")
    context = jnp.asarray(context)
    if context.shape != context_shape:
        raise ValueError(f"context must have shape {context_shape}, got shape {context.shape}")
    return context


def check_int(name: str, value, *, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer ≥ ``minimum``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_decode_step(i, token, value_dtype=None) -> tuple[Int[Array, ""], Array]:
    """Check the ``(i, token)`` of a ``decode_step`` call: integer scalars, returned as int32.

    With a ``value_dtype`` (nets with real-valued positions) ``token`` is the previous value, any
    real scalar, returned as ``value_dtype``.
    """
    i, token = jnp.asarray(i), jnp.asarray(token)
    if i.shape != () or not jnp.issubdtype(i.dtype, jnp.integer):
        raise TypeError(f"i must be an integer scalar position, got shape {i.shape}, dtype {i.dtype}")
    if value_dtype is not None:
        if token.shape != () or not (jnp.issubdtype(token.dtype, jnp.number)):
            raise TypeError(
                f"token must be a real scalar (the value x[i-1]), got shape {token.shape}, dtype {token.dtype}"
            )
        return i.astype(jnp.int32), token.astype(value_dtype)
    if token.shape != () or not jnp.issubdtype(token.dtype, jnp.integer):
        raise TypeError(f"token must be an integer scalar (x[i-1]), got shape {token.shape}, dtype {token.dtype}")
    return i.astype(jnp.int32), token.astype(jnp.int32)


def scaled_normal(key, scales: list[np.ndarray], dtype) -> list[Array]:
    """Independent standard normals times each of ``scales``, drawn in one call for all of a net's weights."""
    return _scaled_normal(key, [np.asarray(s, dtype=dtype) for s in scales])


@jax.jit
def _scaled_normal(key, scales):
    sizes = [s.size for s in scales]
    flat = jax.random.normal(key, (sum(sizes),), scales[0].dtype)
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
    return [p.reshape(s.shape) * s for p, s in zip(pieces, scales)]
