r"""Running chains, tempering and simulated annealing with any BlackJAX-style sampler.

``run_chains`` runs many independent chains (``vmap`` over chains, ``lax.scan`` over steps).
``tempered`` raises a target to a power, ``π^β``; ``simulated_annealing`` follows a schedule of
``β`` upwards so the chain settles on high-density sequences (``β → ∞`` concentrates on the argmax).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from arjax.mcmc.independence import check_positive_int, safe_logdensity

__all__ = ["AnnealingResult", "tempered", "simulated_annealing", "run_chains"]


class AnnealingResult(NamedTuple):
    """Outcome of ``simulated_annealing``.

    position
        The final sequence, ``Int[N]``.
    best_position
        The sequence of highest untempered ``ln π`` seen at the end of any step.
    best_logdensity
        ``ln π(best_position)`` (untempered).
    logdensity
        Untempered ``ln π`` of the chain after each step, ``Float[T]``.
    """

    position: Int[Array, " N"]
    best_position: Int[Array, " N"]
    best_logdensity: Float[Array, ""]
    logdensity: Float[Array, " T"]


def tempered(
    logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]], beta: float | Float[Array, ""]
) -> Callable[[Int[Array, " N"]], Float[Array, ""]]:
    r"""The tempered log-density ``x ↦ β ln π(x)`` (``β`` may be traced).

    >>> import jax.numpy as jnp
    >>> float(tempered(lambda x: -jnp.sum(x) * 1.0, 0.5)(jnp.array([1, 1])))
    -1.0
    """

    def tempered_logdensity(position):
        return beta * logdensity_fn(position)

    return tempered_logdensity


def simulated_annealing(
    rng_key: PRNGKeyArray,
    make_algorithm: Callable[[Callable], SamplingAlgorithm],
    logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
    initial_position: Int[Array, " N"],
    betas: Float[Array, " T"],
) -> AnnealingResult:
    r"""Simulated annealing: step ``t`` is one step of ``make_algorithm(tempered(logdensity_fn, betas[t]))``.

    The state is rebuilt from the position at every step, so each step pays one extra evaluation
    of the target (and of the proposal for independence MH). Use an increasing ``betas`` schedule,
    e.g. ``jnp.geomspace(0.1, 10.0, T)``, to look for ``argmax π``.

    Args:
        make_algorithm: maps a log-density to a ``SamplingAlgorithm``, e.g.
            ``lambda f: arjax.mcmc.cloze(f, model)``.
        betas: inverse temperatures, one per step, all ``> 0``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax import Autoregressive, mcmc
        >>> from arjax.nn import MADE
        >>> p = Autoregressive(MADE(num_positions=6, num_categories=2, key=jax.random.key(0)))
        >>> score = lambda x: jnp.sum(x == jnp.array([0, 1, 1, 0, 1, 0])) * 1.0
        >>> result = simulated_annealing(jax.random.key(1), lambda f: mcmc.cloze(f, p), score,
        ...                              jnp.zeros(6, jnp.int32), jnp.geomspace(0.5, 20.0, 30))
        >>> result.best_position.tolist(), float(result.best_logdensity)
        ([0, 1, 1, 0, 1, 0], 6.0)
    """
    betas = jnp.asarray(betas)
    if betas.ndim != 1 or betas.shape[0] < 1:
        raise ValueError(f"betas must be a 1-D array with one inverse temperature per step, got shape {betas.shape}")
    initial_position = jnp.asarray(initial_position)
    initial_logdensity = safe_logdensity(logdensity_fn(initial_position))

    def one_step(carry, inputs):
        position, best_position, best_logdensity = carry
        key, beta = inputs
        algorithm = make_algorithm(tempered(logdensity_fn, beta))
        state, _ = algorithm.step(key, algorithm.init(position))
        logdensity = safe_logdensity(logdensity_fn(state.position)).astype(best_logdensity.dtype)
        better = logdensity > best_logdensity
        best_position = jnp.where(better, state.position, best_position)
        best_logdensity = jnp.where(better, logdensity, best_logdensity)
        return (state.position, best_position, best_logdensity), logdensity

    keys = jax.random.split(rng_key, betas.shape[0])
    carry = (initial_position, initial_position, initial_logdensity)
    (position, best_position, best_logdensity), trace = lax.scan(one_step, carry, (keys, betas))
    return AnnealingResult(position, best_position, best_logdensity, trace)


def run_chains(
    rng_key: PRNGKeyArray,
    algorithm: SamplingAlgorithm,
    initial_positions: Int[Array, "C N"],
    num_steps: int,
) -> tuple[Int[Array, "C S N"], PyTree]:
    r"""Run one chain per row of ``initial_positions`` for ``num_steps`` steps.

    ``vmap`` over chains of a ``lax.scan`` over steps; compile it once with
    ``jax.jit(run_chains, static_argnums=(1, 3))`` (the algorithm and ``num_steps`` are static).

    Returns:
        ``(positions, infos)``: the position after every step, ``[C, S, N]`` (chains first, as
        ``numpyro``'s ``group_by_chain``), and the step infos with leading axes ``[C, S]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax import Autoregressive, mcmc
        >>> from arjax.nn import MADE
        >>> q = Autoregressive(MADE(num_positions=4, num_categories=2, key=jax.random.key(0)))
        >>> alg = mcmc.independence(q.log_prob, q)
        >>> positions, infos = run_chains(jax.random.key(1), alg, jnp.zeros((3, 4), jnp.int32), 10)
        >>> positions.shape, infos.is_accepted.shape
        ((3, 10, 4), (3, 10))
    """
    initial_positions = jnp.asarray(initial_positions)
    if initial_positions.ndim != 2:
        raise ValueError(
            f"initial_positions must have shape (num_chains, N), one row per chain, got shape {initial_positions.shape}"
        )
    check_positive_int("num_steps", num_steps)

    def one_chain(key, position):
        def one_step(state, step_key):
            state, info = algorithm.step(step_key, state)
            return state, (state.position, info)

        _, (positions, infos) = lax.scan(one_step, algorithm.init(position), jax.random.split(key, num_steps))
        return positions, infos

    keys = jax.random.split(rng_key, initial_positions.shape[0])
    return jax.vmap(one_chain)(keys, initial_positions)
