"""Symmetrised variational distributions, e.g. VAN's Z₂ ``q_z2(x) = ½[q(x) + q(1-x)]``."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.distribution import Autoregressive
from arjax.sampling import sample, sample_and_log_prob

__all__ = ["SYMMETRIES", "check_symmetry", "symmetrized_sample", "symmetrized_log_prob"]

SYMMETRIES = (None, "z2")


def check_symmetry(net, symmetry) -> None:
    """Raise ``ValueError`` unless ``symmetry`` is one of ``SYMMETRIES`` and fits the net."""
    if symmetry not in SYMMETRIES:
        raise ValueError(f'symmetry must be None or "z2", got {symmetry!r}')
    if symmetry == "z2" and net.num_categories != 2:
        raise ValueError(f'symmetry="z2" needs two categories (spins), the net has {net.num_categories}')


def symmetrized_sample(
    net, key: PRNGKeyArray, num_samples: int, symmetry: str | None, *, sharding=None, reparameterized: bool = False
) -> Int[Array, "B N"]:
    """Exact samples of ``q`` (or of ``q_z2``: samples of ``q`` flipped with probability ½).

    ``reparameterized=True`` keeps the gradient of continuous values with respect to the net
    (``sample_and_log_prob``'s implicit reparameterisation) instead of reading it through ``stop_gradient``.

    >>> import jax
    >>> from arjax.nn import MADE
    >>> symmetrized_sample(MADE(4, 2, key=jax.random.key(0)), jax.random.key(1), 3, "z2").shape
    (3, 4)
    """
    check_symmetry(net, symmetry)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer ≥ 2 (the baseline needs a batch), got {num_samples!r}")
    sample_key, flip_key = jax.random.split(key)
    if reparameterized:
        x = sample_and_log_prob(net, sample_key, (num_samples,), sharding=sharding)[0]
    else:
        x = sample(net, sample_key, (num_samples,), sharding=sharding)
    if symmetry is None:
        return x
    flip = jax.random.bernoulli(flip_key, 0.5, (num_samples, 1))
    return jnp.where(flip, 1 - x, x)


def symmetrized_log_prob(net, x: Int[Array, "B N"], symmetry: str | None) -> Float[Array, " B"]:
    """``ln q(x)``, or ``ln ½[q(x) + q(1-x)]`` for ``symmetry="z2"``.

    >>> import jax, jax.numpy as jnp
    >>> from arjax.nn import MADE
    >>> net = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
    >>> x = jnp.array([[0, 1, 1, 0]])
    >>> bool(jnp.allclose(symmetrized_log_prob(net, x, "z2"), symmetrized_log_prob(net, 1 - x, "z2")))
    True
    """
    check_symmetry(net, symmetry)
    if symmetry is None:
        return Autoregressive(net).log_prob(x)
    log_q, log_q_flipped = Autoregressive(net).log_prob(jnp.stack([x, 1 - x]))  # one pass over both
    return jnp.logaddexp(log_q, log_q_flipped) - jnp.log(2.0)
