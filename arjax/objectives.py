"""Loss functions ``loss(net, key, ...) -> scalar`` to differentiate with ``jax.grad``.

``nll`` is forward KL to data (maximum likelihood); ``free_energy_loss`` is reverse KL to a
Boltzmann distribution (variational free energy, as in Variational Autoregressive Networks).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.distribution import Autoregressive

__all__ = ["nll", "free_energy_loss", "symmetrized_log_prob", "check_beta"]


def nll(net: eqx.Module, x: Int[Array, "B N"], *, context=None, allowed=None) -> Float[Array, ""]:
    r"""Mean negative log-likelihood ``-E_data[ln p(x)]`` in nats per sequence.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax.nn import MeanField
        >>> net = MeanField(num_positions=3, num_categories=2, init_scale=0.0, key=jax.random.key(0))
        >>> round(float(nll(net, jnp.array([[0, 1, 1]]))), 4)   # uniform: 3 ln 2
        2.0794
    """
    return -jnp.mean(Autoregressive(net, context, allowed).log_prob(x))


def free_energy_loss(
    net: eqx.Module,
    key: PRNGKeyArray,
    target,
    beta: float | Float[Array, ""],
    num_samples: int,
    *,
    symmetry: str | None = None,
) -> Float[Array, ""]:
    r"""Variational free energy ``F = E_q[E(x) + T ln q(x)]`` with VAN's score-function gradient.

    The value is the Monte Carlo estimate of ``F`` (total, ``T = 1/β``) from ``num_samples``
    exact samples of ``q``. The gradient is the REINFORCE estimator with the batch-mean baseline
    (Wu, Wang, Zhang 2019): ``∇F ≈ T · mean[(f(x) - b) ∇ ln q(x)]`` with ``f = βE + ln q`` and
    ``b = mean f``; the baseline does not bias the gradient because ``E_q[∇ ln q] = 0``.

    ``symmetry="z2"`` (two categories only) uses ``q_z2(x) = ½[q(x) + q(1-x)]``, VAN's ``--z2``:
    samples of ``q`` are flipped with probability ½, which samples ``q_z2`` exactly.

    Example:
        >>> import jax
        >>> from arjax.nn import MADE
        >>> from arjax.targets import IsingSquare
        >>> target = IsingSquare(3)
        >>> net = MADE(num_positions=9, num_categories=2, key=jax.random.key(0))
        >>> f, grads = jax.value_and_grad(free_energy_loss)(net, jax.random.key(1), target, 0.4, 256)
        >>> bool(f >= -target.exact_log_partition(0.4) / 0.4 - 1.0)
        True
    """
    _check_sizes(net, target)
    beta = check_beta(beta)
    x = jax.lax.stop_gradient(_sample(net, key, num_samples, symmetry))
    log_q = symmetrized_log_prob(net, x, symmetry)
    f = jax.lax.stop_gradient(beta * jax.vmap(target.energy)(x) + log_q)
    surrogate = jnp.mean((f - jnp.mean(f)) * log_q) / beta
    return surrogate - jax.lax.stop_gradient(surrogate) + jax.lax.stop_gradient(jnp.mean(f) / beta)


def symmetrized_log_prob(net: eqx.Module, x: Int[Array, "B N"], symmetry: str | None) -> Float[Array, " B"]:
    """``ln q(x)``, or ``ln ½[q(x) + q(1-x)]`` for ``symmetry="z2"``.

    >>> import jax, jax.numpy as jnp
    >>> from arjax.nn import MADE
    >>> net = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
    >>> x = jnp.array([[0, 1, 1, 0]])
    >>> bool(jnp.allclose(symmetrized_log_prob(net, x, "z2"), symmetrized_log_prob(net, 1 - x, "z2")))
    True
    """
    log_q = Autoregressive(net).log_prob(x)
    if symmetry is None:
        return log_q
    _check_symmetry(net, symmetry)
    return jnp.logaddexp(log_q, Autoregressive(net).log_prob(1 - x)) - jnp.log(2.0)


def check_beta(beta):
    """Raise ``ValueError`` unless ``beta`` is a finite positive number (``eqx.error_if`` if traced)."""
    try:
        value = float(beta)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return eqx.error_if(beta, ~(jnp.isfinite(beta) & (beta > 0)), "beta must be finite and > 0")
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return beta


def _sample(net, key, num_samples: int, symmetry):
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer ≥ 2 (the baseline needs a batch), got {num_samples!r}")
    sample_key, flip_key = jax.random.split(key)
    x = Autoregressive(net).sample(sample_key, (num_samples,))
    if symmetry is None:
        return x
    _check_symmetry(net, symmetry)
    flip = jax.random.bernoulli(flip_key, 0.5, (num_samples, 1))
    return jnp.where(flip, 1 - x, x)


def _check_symmetry(net, symmetry) -> None:
    if symmetry != "z2":
        raise ValueError(f'symmetry must be None or "z2", got {symmetry!r}')
    if net.num_categories != 2:
        raise ValueError(f'symmetry="z2" needs two categories (spins), the net has {net.num_categories}')


def _check_sizes(net, target) -> None:
    if (net.num_positions, net.num_categories) != (target.num_positions, target.num_categories):
        raise ValueError(
            f"net and target disagree: net has num_positions={net.num_positions}, num_categories="
            f"{net.num_categories}; target has {target.num_positions}, {target.num_categories}"
        )
