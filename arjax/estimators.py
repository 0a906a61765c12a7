"""Free-energy and counting estimates from exact samples of an autoregressive ``q``."""

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from arjax.distribution import Autoregressive
from arjax.families.layout import net_layout
from arjax.symmetry import symmetrized_log_prob, symmetrized_sample

__all__ = [
    "FreeEnergyEstimate", "free_energy", "free_energy_statistics", "check_beta", "check_sizes",
    "CountEstimate", "count", "pool_counts", "check_proposal",
]  # fmt: skip


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


class CountEstimate(NamedTuple):
    r"""Importance-sampling estimate of a number of solutions, ``Q = E_q[1{x solves} / q(x)]``.

    ``Q̂ = mean(w)`` over the ``num_samples`` weights ``w = 1{x solves}/q(x)`` is unbiased for any
    ``q`` that gives every solution positive probability (dead ends and non-solutions count as
    ``w = 0``). Its logarithm is not: ``E[ln Q̂] ≈ ln Q - ½ (stderr of Q̂ / Q)²``, which
    ``log_count_bias`` estimates; at the accuracies reported here it is far below the error bar.

    Attributes:
        log_count: ``ln Q̂``.
        log_count_stderr: standard error of ``ln Q̂`` (delta method), i.e. the relative standard
            error of ``Q̂``; from the sample variance of ``w``, so it can be optimistic while the
            weights' heavy tail is unexplored (watch ``ess``).
        log_count_bias: ``-½ log_count_stderr²``, the expected bias of ``ln Q̂``.
        lower_bound: ``ln(completed) + mean(ln w | completed)``, a variational lower bound on
            ``ln Q`` (Jensen: ``Q = P(complete) E[w | complete] ≥ P(complete) e^{E[ln w | complete]}``);
            equal to ``ln Q`` for the zero-variance proposal.
        ess: effective sample size ``(Σw)²/Σw²``.
        completed: fraction of samples with ``w > 0``.
        num_samples: number of samples ``M``.
    """

    log_count: float
    log_count_stderr: float
    log_count_bias: float
    lower_bound: float
    ess: float
    completed: float
    num_samples: int

    @property
    def count(self) -> float:
        """``Q̂ = exp(log_count)``."""
        return math.exp(self.log_count)

    @property
    def count_stderr(self) -> float:
        """Standard error of ``Q̂``."""
        return self.count * self.log_count_stderr


def count(
    proposal: Autoregressive | eqx.Module,
    is_solution: Callable[[Int[Array, " N"]], Bool[Array, ""]],
    key: PRNGKeyArray,
    num_samples: int,
    *,
    batch_size: int = 2**14,
) -> CountEstimate:
    r"""Estimate the number of solutions ``Q = Σ_x 1{x solves}`` by importance sampling from ``proposal``.

    Draws ``num_samples`` exact samples of ``q`` in batches of ``batch_size`` (one jitted call
    and four numbers back per batch, accumulated in float64 with a running log-sum-exp, so memory
    never holds more than one batch) and averages ``w = 1{x solves}/q(x)``.

    Args:
        proposal: anything with ``sample_and_log_prob(key, (batch,)) -> (x, ln q)`` giving exact
            samples and their log-probabilities: an ``arjax.Autoregressive`` (with an ``allowed``
            rule that may have dead ends, ``ln q = -inf``) or an
            ``arjax.counting.QueensProposal``. It must give every solution ``q > 0``.
        is_solution: ``x: Int[N] -> bool`` for one sequence (e.g. ``NQueens(n).is_valid``).
        key: a ``jax.random`` key; batch ``b`` uses ``fold_in(key, b)``.
        num_samples: ``M ≥ 1``; the last batch is cut to fit.
        batch_size: samples per jitted call.

    Example:
        >>> import jax
        >>> from arjax.counting import QueensProposal
        >>> from arjax.targets import NQueens
        >>> est = count(QueensProposal.knuth(8), NQueens(8).is_valid, jax.random.key(0), 100_000)
        >>> abs(est.count - 92) < 4 * est.count_stderr, est.num_samples
        (True, 100000)
    """
    check_proposal(proposal, is_solution)
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    batch_size = min(batch_size, num_samples)
    num_batches = -(-num_samples // batch_size)
    total = _LogSums()
    pending = None
    for b in range(num_batches):  # dispatch batch b before reading batch b - 1, so the device never waits
        used = min(batch_size, num_samples - b * batch_size)
        stats = _count_batch(proposal, is_solution, jax.random.fold_in(key, b), batch_size, jnp.asarray(used))
        if pending is not None:
            total.add(*pending)
        pending = stats
    total.add(*pending)
    return total.estimate(num_samples)


def pool_counts(estimates) -> CountEstimate:
    """One ``CountEstimate`` from independent ones of the same proposal (e.g. resumable segments of a long run).

    Each estimate's ``Σw``, ``Σw²``, completions and ``Σ ln w`` are recovered from its fields,
    so pooling equals one run over all the samples.

    >>> a = CountEstimate(2.0, 0.1, -0.005, 1.5, 50.0, 0.2, 1000)
    >>> pooled = pool_counts([a, a])
    >>> pooled.num_samples, round(pooled.log_count, 6), round(pooled.ess, 6)
    (2000, 2.0, 100.0)
    """
    estimates = list(estimates)
    if not estimates or not all(isinstance(e, CountEstimate) for e in estimates):
        raise TypeError(f"estimates must be a non-empty sequence of CountEstimate, got {estimates!r}")
    total = _LogSums()
    for e in estimates:
        completed = round(e.completed * e.num_samples)
        if completed == 0:
            total.add(-math.inf, 0.0, 0.0, 0, 0.0)
            continue
        log_s1 = e.log_count + math.log(e.num_samples)  # ln Σw; Σw² = (Σw)²/ESS
        sum_log_w = (e.lower_bound - math.log(e.completed)) * completed
        total.add(log_s1, 1.0, 1.0 / e.ess, completed, sum_log_w)
    return total.estimate(sum(e.num_samples for e in estimates))


def check_proposal(proposal, is_solution, name: str = "proposal") -> int:
    """Check that ``proposal`` samples sequences that ``is_solution`` accepts; return their length N.

    Raises ``TypeError``/``ValueError`` naming ``name`` when ``proposal`` has no
    ``sample_and_log_prob`` or its sequences have the wrong length for ``is_solution`` (e.g. a
    proposal for 6 queens with ``NQueens(7).is_valid``).

    >>> from arjax.counting import QueensProposal
    >>> from arjax.targets import NQueens
    >>> check_proposal(QueensProposal(5), NQueens(5).is_valid)
    5
    """
    if not callable(getattr(proposal, "sample_and_log_prob", None)):
        raise TypeError(
            f"{name} must have sample_and_log_prob(key, sample_shape) -> (x, log_q) (e.g. arjax.Autoregressive "
            f"or arjax.counting.QueensProposal), got {type(proposal).__name__}"
        )
    if not callable(is_solution):
        raise TypeError(f"is_solution must be callable as is_solution(x: Int[N]) -> bool, got {is_solution!r}")
    event_shape = getattr(proposal, "event_shape", None)
    length = event_shape[-1] if event_shape else getattr(proposal, "num_positions", None)
    if not isinstance(length, int):
        raise TypeError(f"{name} must say its sequence length (num_positions or event_shape), "
                        f"got {type(proposal).__name__}")
    try:
        out = jax.eval_shape(is_solution, jax.ShapeDtypeStruct((length,), jnp.int32))
    except (ValueError, TypeError, IndexError) as error:
        raise ValueError(
            f"{name} samples sequences of {length} tokens, which is_solution does not accept (wrong size?): {error}"
        ) from None
    if getattr(out, "shape", None) != ():
        raise ValueError(f"is_solution must map one sequence of {length} tokens to a scalar, got shape {out.shape}")
    return length


@eqx.filter_jit
def _count_batch(proposal, is_solution, key, batch_size, used):
    x, log_q = proposal.sample_and_log_prob(key, (batch_size,))
    solved = jax.vmap(is_solution)(x) & jnp.isfinite(log_q) & (jnp.arange(batch_size) < used)
    log_w = jnp.where(solved, -log_q, -jnp.inf).astype(jnp.float32)
    top = jnp.max(log_w)
    shift = jnp.where(jnp.isfinite(top), top, 0.0)
    scaled = jnp.exp(log_w - shift)
    return top, jnp.sum(scaled), jnp.sum(scaled**2), jnp.sum(solved), jnp.sum(jnp.where(solved, log_w, 0.0))


class _LogSums:
    """Running ``Σw``, ``Σw²`` (as ``e^{top}·s1``, ``e^{2 top}·s2``), completions and ``Σ ln w`` in float64."""

    def __init__(self):
        self.top, self.s1, self.s2, self.completed, self.sum_log_w = -math.inf, 0.0, 0.0, 0, 0.0

    def add(self, top, s1, s2, completed, sum_log_w):
        top, s1, s2 = float(top), float(s1), float(s2)
        self.completed += int(completed)
        self.sum_log_w += float(sum_log_w)
        if top == -math.inf:
            return
        new_top = max(self.top, top)
        old, new = math.exp(self.top - new_top), math.exp(top - new_top)
        self.s1, self.s2 = self.s1 * old + s1 * new, self.s2 * old**2 + s2 * new**2
        self.top = new_top

    def estimate(self, num_samples: int) -> CountEstimate:
        if self.completed == 0:
            return CountEstimate(-math.inf, math.nan, math.nan, -math.inf, 0.0, 0.0, num_samples)
        mean = self.s1 / num_samples
        variance = max(self.s2 / num_samples - mean**2, 0.0) * num_samples / max(num_samples - 1, 1)
        relative = math.sqrt(variance / num_samples) / mean
        fraction = self.completed / num_samples
        return CountEstimate(
            log_count=self.top + math.log(mean),
            log_count_stderr=relative,
            log_count_bias=-0.5 * relative**2,
            lower_bound=math.log(fraction) + self.sum_log_w / self.completed,
            ess=self.s1**2 / self.s2,
            completed=fraction,
            num_samples=num_samples,
        )
