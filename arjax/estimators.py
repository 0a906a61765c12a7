"""Free-energy estimates from exact samples of an autoregressive ``q``."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from arjax.families.layout import net_layout
from arjax.symmetry import symmetrized_log_prob, symmetrized_sample

__all__ = ["FreeEnergyEstimate", "free_energy", "free_energy_statistics", "check_beta", "check_sizes"]


class FreeEnergyEstimate(NamedTuple):
    """Estimates for the whole system (use ``per_site(N)`` to divide by the number of sites).

    Attributes:
        variational: ``F_q = E_q[E + T ln q]``, an upper bound on the exact ``F``.
        variational_stderr: its Monte Carlo standard error.
        importance: ``F_IS = -T ln mean(e^{-βE}/q)``, consistent (→ exact ``F`` as samples grow),
            biased upwards at finite sample size by about ``T·var(w)/(2M mean(w)²)``.
        importance_stderr: delta-method standard error of ``F_IS``.
        ess: effective sample size ``(Σw)²/Σw²`` of the importance weights, out of the samples.
        energy: ``E_q[E]``.
        entropy: ``S_q = -E_q[ln q]``.
    """

    variational: Float[Array, ""]
    variational_stderr: Float[Array, ""]
    importance: Float[Array, ""]
    importance_stderr: Float[Array, ""]
    ess: Float[Array, ""]
    energy: Float[Array, ""]
    entropy: Float[Array, ""]

    def per_site(self, num_sites: int) -> "FreeEnergyEstimate":
        """The same estimates divided by ``num_sites`` (the ESS is left as is)."""
        return FreeEnergyEstimate(*(v if f == "ess" else v / num_sites for f, v in zip(self._fields, self)))


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
    check_sizes(net, target)
    return _free_energy(net, target, jnp.asarray(check_beta(beta), float), key, num_samples, symmetry)


def free_energy_statistics(energy: Float[Array, " B"], log_q: Float[Array, " B"], beta) -> FreeEnergyEstimate:
    """``FreeEnergyEstimate`` from the energies and ``ln q`` of exact samples of ``q``.

    >>> import jax.numpy as jnp
    >>> est = free_energy_statistics(jnp.array([-1.0, -1.0]), jnp.array([-0.5, -0.5]), 2.0)
    >>> float(est.variational), float(est.ess)
    (-1.25, 2.0)
    """
    num_samples = energy.shape[0]
    log_w = -beta * energy - log_q
    w = jnp.exp(log_w - jnp.max(log_w))
    f = energy + log_q / beta
    return FreeEnergyEstimate(
        variational=jnp.mean(f),
        variational_stderr=jnp.std(f) / jnp.sqrt(num_samples),
        importance=-(jax.nn.logsumexp(log_w) - jnp.log(num_samples)) / beta,
        importance_stderr=jnp.std(w) / jnp.mean(w) / jnp.sqrt(num_samples) / beta,
        ess=jnp.sum(w) ** 2 / jnp.sum(w**2),
        energy=jnp.mean(energy),
        entropy=-jnp.mean(log_q),
    )


def check_beta(beta):
    """Raise ``ValueError`` unless ``beta`` is a finite positive number (``eqx.error_if`` if traced)."""
    try:
        value = float(beta)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return eqx.error_if(beta, ~(jnp.isfinite(beta) & (beta > 0)), "beta must be finite and > 0")
    if not (0 < value < float("inf")):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return beta


def check_sizes(net, target) -> None:
    """Raise ``ValueError`` when ``net`` and ``target`` disagree on N or K.

    A target of real values (``num_categories`` None, e.g. a lattice field) needs a net without
    token positions.
    """
    if (net.num_positions, net.num_categories) != (target.num_positions, target.num_categories):
        raise ValueError(
            f"net and target disagree: net has num_positions={net.num_positions}, num_categories="
            f"{net.num_categories}; target has {target.num_positions}, {target.num_categories}"
        )
    if target.num_categories is None and net_layout(net).categorical_size is not None:
        raise ValueError("the target's values are real numbers, but the net has token (Categorical) positions")


@eqx.filter_jit
def _free_energy(net, target, beta, key, num_samples, symmetry) -> FreeEnergyEstimate:
    x = symmetrized_sample(net, key, num_samples, symmetry)
    return free_energy_statistics(jax.vmap(target.energy)(x), symmetrized_log_prob(net, x, symmetry), beta)
