"""Loss functions ``loss(net, key, ...) -> scalar`` to differentiate with ``jax.grad``.

``nll`` is forward KL to data (maximum likelihood); ``free_energy_loss`` is reverse KL to a
Boltzmann distribution (variational free energy, as in Variational Autoregressive Networks).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.distribution import Autoregressive
from arjax.estimators import FreeEnergyEstimate, check_beta, check_sizes, free_energy_statistics
from arjax.symmetry import symmetrized_log_prob, symmetrized_sample

__all__ = ["nll", "free_energy_loss"]


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
    has_aux: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], FreeEnergyEstimate]:
    r"""Variational free energy ``F = E_q[E(x) + T ln q(x)]`` with VAN's score-function gradient.

    The value is the Monte Carlo estimate of ``F`` (total, ``T = 1/β``) from ``num_samples``
    exact samples of ``q``. The gradient is the REINFORCE estimator with the batch-mean baseline
    (Wu, Wang, Zhang 2019): ``∇F ≈ T · mean[(f(x) - b) ∇ ln q(x)]`` with ``f = βE + ln q`` and
    ``b = mean f``; the baseline does not bias the gradient because ``E_q[∇ ln q] = 0``.

    ``symmetry="z2"`` (two categories only) uses ``q_z2(x) = ½[q(x) + q(1-x)]``, VAN's ``--z2``.
    ``has_aux=True`` also returns the batch's ``FreeEnergyEstimate`` (for
    ``jax.value_and_grad(..., has_aux=True)``).

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
    check_sizes(net, target)
    beta = check_beta(beta)
    x = jax.lax.stop_gradient(symmetrized_sample(net, key, num_samples, symmetry))
    log_q = symmetrized_log_prob(net, x, symmetry)
    energy = jax.vmap(target.energy)(x)
    f = jax.lax.stop_gradient(beta * energy + log_q)
    surrogate = jnp.mean((f - jnp.mean(f)) * log_q) / beta
    loss = surrogate - jax.lax.stop_gradient(surrogate) + jax.lax.stop_gradient(jnp.mean(f) / beta)
    if not has_aux:
        return loss
    stats = free_energy_statistics(jax.lax.stop_gradient(energy), jax.lax.stop_gradient(log_q), beta)
    return loss, stats
