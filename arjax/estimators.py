"""Free-energy estimates from exact samples of an autoregressive ``q``."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from arjax.objectives import _check_sizes, _sample, check_beta, symmetrized_log_prob

__all__ = ["FreeEnergyEstimate", "free_energy"]


class FreeEnergyEstimate(NamedTuple):
    """Estimates for the whole system (use ``per_site()`` to divide by N).

    Attributes:
        variational: ``F_q = E_q[E + T ln q]``, an upper bound on the exact ``F``.
        variational_stderr: its Monte Carlo standard error.
        importance: ``F_IS = -T ln mean(e^{-βE}/q)``, consistent (→ exact ``F`` as samples grow),
            biased upwards at finite sample size by about ``T·var(w)/(2M mean(w)²)``.
        importance_stderr: delta-method standard error of ``F_IS``.
        ess: effective sample size ``(Σw)²/Σw²`` of the importance weights, out of ``num_samples``.
        energy: ``E_q[E]``.
        entropy: ``S_q = -E_q[ln q]``.
        num_positions: N, the divisor of ``per_site``.
    """

    variational: Float[Array, ""]
    variational_stderr: Float[Array, ""]
    importance: Float[Array, ""]
    importance_stderr: Float[Array, ""]
    ess: Float[Array, ""]
    energy: Float[Array, ""]
    entropy: Float[Array, ""]
    num_positions: int

    def per_site(self) -> "FreeEnergyEstimate":
        """The same estimates divided by N (the ESS is left as is)."""
        n = self.num_positions
        scaled = {f: getattr(self, f) / n for f in self._fields if f not in ("ess", "num_positions")}
        return self._replace(**scaled)


def free_energy(
    net, target, beta: float, key: PRNGKeyArray, num_samples: int, *, symmetry: str | None = None
) -> FreeEnergyEstimate:
    r"""Variational and importance-weighted free energies of ``target`` at inverse temperature ``beta``.

    Trust ``variational`` as a rigorous upper bound; trust ``importance`` when the ESS is a
    sizeable fraction of ``num_samples`` — then it is the better estimate of the exact ``F``.

    Example:
        >>> import jax
        >>> from arjax.nn import MeanField
        >>> from arjax.targets import IsingSquare
        >>> est = free_energy(MeanField(9, 2, key=jax.random.key(0)), IsingSquare(3), 0.3, jax.random.key(1), 4096)
        >>> bool(est.variational >= IsingSquare(3).exact_free_energy(0.3) - 3 * est.variational_stderr)
        True
    """
    _check_sizes(net, target)
    return _free_energy(net, target, jnp.asarray(check_beta(beta), float), key, num_samples, symmetry)


@eqx.filter_jit
def _free_energy(net, target, beta, key, num_samples, symmetry) -> FreeEnergyEstimate:
    x = _sample(net, key, num_samples, symmetry)
    log_q = symmetrized_log_prob(net, x, symmetry)
    energy = jax.vmap(target.energy)(x)
    f = energy + log_q / beta
    log_w = -beta * energy - log_q
    log_mean_w = jax.nn.logsumexp(log_w) - jnp.log(num_samples)
    w = jnp.exp(log_w - jnp.max(log_w))
    relative_std = jnp.std(w) / jnp.mean(w) / jnp.sqrt(num_samples)
    return FreeEnergyEstimate(
        variational=jnp.mean(f),
        variational_stderr=jnp.std(f) / jnp.sqrt(num_samples),
        importance=-log_mean_w / beta,
        importance_stderr=relative_std / beta,
        ess=jnp.sum(w) ** 2 / jnp.sum(w**2),
        energy=jnp.mean(energy),
        entropy=-jnp.mean(log_q),
        num_positions=net.num_positions,
    )
