r"""Independence Metropolis–Hastings with an autoregressive proposal.

Each step draws a whole sequence ``x' ~ q`` independently of the current ``x`` and accepts it with
probability ``min[1, π(x') q(x) / π(x) q(x')]``. The state caches ``ln q(x)`` (taken from the
sampling pass, so a step costs one draw from ``q`` and one evaluation of ``ln π``). A perfect
proposal (``q = π``) accepts every step; the acceptance rate measures how far ``q`` is from ``π``.
"""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm, build_sampling_algorithm
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray
from numpyro.distributions import Distribution

__all__ = [
    "IndependenceState",
    "IndependenceInfo",
    "init",
    "build_kernel",
    "as_top_level_api",
    "check_position",
    "check_proposal",
    "safe_logdensity",
]


class IndependenceState(NamedTuple):
    """State of the independence Metropolis–Hastings chain.

    position
        The current sequence, ``Int[N]``.
    logdensity
        ``ln π(position)`` (``-inf`` where the target returned NaN).
    proposal_logdensity
        ``ln q(position)`` under the proposal, cached so no step recomputes it.
    """

    position: Int[Array, " N"]
    logdensity: Float[Array, ""]
    proposal_logdensity: Float[Array, ""]


class IndependenceInfo(NamedTuple):
    """What happened in one step.

    acceptance_rate
        ``min[1, π(x') q(x) / π(x) q(x')]`` for the proposed ``x'`` (0 when it is undefined).
    is_accepted
        Whether the chain moved to the proposal.
    proposal
        The proposed state (position, ``ln π`` and ``ln q`` of the proposal).
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    proposal: IndependenceState


def init(
    position: Int[Array, " N"], logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]], proposal
) -> IndependenceState:
    """Create the chain state at ``position``: evaluates ``ln π`` and ``ln q`` there once.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> q = Autoregressive(MADE(num_positions=4, num_categories=2, key=jax.random.key(0)))
        >>> state = init(jnp.zeros(4, jnp.int32), q.log_prob, q)
        >>> bool(jnp.isclose(state.logdensity, state.proposal_logdensity))
        True
    """
    num_positions, num_categories = check_proposal(proposal)
    position = check_position(position, num_positions, num_categories, "position")
    logdensity = safe_logdensity(logdensity_fn(position))
    return IndependenceState(position, logdensity, jnp.asarray(proposal.log_prob(position)))


def build_kernel():
    """Build the independence Metropolis–Hastings kernel.

    Returns:
        ``kernel(rng_key, state, logdensity_fn, proposal) -> (state, info)``, a pure function;
        ``proposal`` is an ``arjax.Autoregressive`` (or any distribution over ``Int[N]`` with
        ``sample`` and ``log_prob``) with ``batch_shape == ()``.

    Example:
        >>> import functools, jax, jax.numpy as jnp
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> q = Autoregressive(MADE(num_positions=4, num_categories=2, key=jax.random.key(0)))
        >>> kernel = functools.partial(build_kernel(), proposal=q)
        >>> state = init(jnp.zeros(4, jnp.int32), q.log_prob, q)
        >>> state, info = kernel(jax.random.key(1), state, q.log_prob)
        >>> bool(info.acceptance_rate > 0.99)
        True
    """

    def kernel(
        rng_key: PRNGKeyArray,
        state: IndependenceState,
        logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
        proposal,
    ) -> tuple[IndependenceState, IndependenceInfo]:
        key_proposal, key_accept = jax.random.split(rng_key)
        position, proposal_logdensity = _sample_and_log_prob(proposal, key_proposal)
        position = position.astype(state.position.dtype)
        logdensity = safe_logdensity(logdensity_fn(position)).astype(state.logdensity.dtype)
        proposed = IndependenceState(position, logdensity, proposal_logdensity.astype(state.proposal_logdensity.dtype))
        log_ratio = (logdensity + state.proposal_logdensity) - (state.logdensity + proposed.proposal_logdensity)
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        is_accepted = jnp.log(jax.random.uniform(key_accept)) < log_ratio
        new_state = jax.tree.map(lambda new, old: jnp.where(is_accepted, new, old), proposed, state)
        return new_state, IndependenceInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), is_accepted, proposed)

    return kernel


def as_top_level_api(
    logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]], proposal: Distribution
) -> SamplingAlgorithm:
    r"""Independence Metropolis–Hastings targeting ``π ∝ exp(logdensity_fn)`` with proposal ``q``.

    Args:
        logdensity_fn: ``ln π(x)`` up to a constant, for one sequence ``Int[N]``; NaN counts as ``-inf``.
        proposal: an ``arjax.Autoregressive`` (``batch_shape == ()``), or any distribution over
            ``Int[N]`` with ``sample`` and ``log_prob``.

    Returns:
        A ``blackjax.base.SamplingAlgorithm``: ``init(position)`` and ``step(rng_key, state)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> q = Autoregressive(MADE(num_positions=4, num_categories=2, key=jax.random.key(0)))
        >>> alg = as_top_level_api(lambda x: -jnp.sum(x).astype(jnp.float32), q)
        >>> state = alg.init(jnp.zeros(4, jnp.int32))
        >>> state, info = jax.jit(alg.step)(jax.random.key(1), state)
        >>> state.position.shape, info.is_accepted.dtype
        ((4,), dtype('bool'))
    """
    check_proposal(proposal)
    return build_sampling_algorithm(build_kernel(), init, logdensity_fn, init_args=(proposal,), kernel_args=(proposal,))


def check_position(position, num_positions: int, num_categories: int | None, name: str = "position") -> Array:
    """Return ``position`` as an integer array of shape ``(N,)`` with tokens in ``0..K-1``, or raise.

    Shape and dtype errors are raised at trace time; token ranges are checked when the values are
    known and with ``eqx.error_if`` when they are traced.

    >>> check_position([0, 1, 1], 3, 2).tolist()
    [0, 1, 1]
    """
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.integer):
        raise TypeError(f"{name} must hold integer tokens, got dtype {position.dtype}")
    if position.shape != (num_positions,):
        raise ValueError(f"{name} must have shape ({num_positions},) (one sequence), got shape {position.shape}")
    if num_categories is None:
        return position
    message = f"{name} holds tokens outside 0..{num_categories - 1}"
    try:
        values = np.asarray(position)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return eqx.error_if(position, jnp.any((position < 0) | (position >= num_categories)), message)
    bad = (values < 0) | (values >= num_categories)
    if bad.any():
        raise ValueError(f"{message}: found {np.unique(values[bad]).tolist()}")
    return position


def check_proposal(proposal) -> tuple[int, int | None]:
    """Return ``(N, K)`` of a proposal distribution over ``Int[N]`` (``K`` is None when unknown), or raise."""
    if not (callable(getattr(proposal, "sample", None)) and callable(getattr(proposal, "log_prob", None))):
        raise TypeError(
            f"proposal must be a distribution with sample and log_prob (e.g. arjax.Autoregressive), "
            f"got {type(proposal).__name__}"
        )
    batch_shape = tuple(getattr(proposal, "batch_shape", ()))
    event_shape = tuple(getattr(proposal, "event_shape", ()))
    if batch_shape != () or len(event_shape) != 1:
        raise ValueError(
            f"proposal must be one distribution over sequences (batch_shape () and event_shape (N,)), got "
            f"batch_shape {batch_shape} and event_shape {event_shape}"
        )
    return event_shape[0], getattr(proposal, "num_categories", None)


def safe_logdensity(value) -> Float[Array, ""]:
    """``value`` as a scalar array with NaN replaced by ``-inf`` (a NaN state is never accepted).

    >>> float(safe_logdensity(float("nan")))
    -inf
    """
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(f"logdensity_fn must return a scalar for one sequence, got shape {value.shape}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(jnp.result_type(float))
    return jnp.where(jnp.isnan(value), -jnp.inf, value)


def _sample_and_log_prob(proposal, key):
    if callable(getattr(proposal, "sample_and_log_prob", None)):
        return proposal.sample_and_log_prob(key)
    position = proposal.sample(key)
    return position, proposal.log_prob(position)
