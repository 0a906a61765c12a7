r"""Cloze sweeps: resample chosen positions one at a time, the others held fixed.

One step visits ``positions`` in the given order. At position ``i``:

* ``mode="gibbs"`` (heat bath): evaluate ``ln π`` at the ``K - 1`` sequences that differ from
  ``x`` only at ``i`` (one batched call; ``ln π(x)`` is in the state) and draw ``x_i`` from the
  normalised result — exact, never rejected. Tokens the model's ``allowed`` rule forbids at ``i`` get probability 0.
* ``mode="mh"``: propose ``x_i' ~ p_model(x_i | x_{<i})`` from the autoregressive model and accept
  with probability ``min[1, π(x') p_model(x_i | x_{<i}) / π(x) p_model(x_i' | x_{<i})]``. The
  prefix ``x_{<i}`` is the same in both directions, so one conditional serves both ways.

Both leave ``π`` invariant and never touch positions outside ``positions``: a full sweep
(``positions = range(N)``) samples ``π``; a subset samples the cloze conditional
``π(x_S | x_{not S})``. With a model that disallows some tokens the chains sample ``π`` restricted
to the allowed sequences; start them at an allowed sequence (``"mh"`` never leaves a token its
model disallows, since it could not propose the way back), and give sequences that a
prefix-dependent ``allowed`` rule forbids ``ln π = -inf`` (e.g. add ``model.log_prob``).
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm, build_sampling_algorithm
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpyro.distributions import Distribution

from arjax.mcmc.independence import check_position, safe_logdensity

__all__ = [
    "ClozeState",
    "ClozeInfo",
    "MODES",
    "init",
    "build_kernel",
    "as_top_level_api",
    "check_mode",
    "check_model",
    "check_positions",
]

MODES = ("gibbs", "mh")
"""The update rules a cloze sweep can use at each position."""


class ClozeState(NamedTuple):
    """State of a cloze chain.

    position
        The current sequence, ``Int[N]``.
    logdensity
        ``ln π(position)`` (``-inf`` where the target returned NaN).
    """

    position: Int[Array, " N"]
    logdensity: Float[Array, ""]


class ClozeInfo(NamedTuple):
    """What happened in one sweep.

    acceptance_rate
        Mean over the swept positions of the acceptance probability (1 for ``mode="gibbs"``).
    num_changed
        How many of the swept positions hold a different token after the sweep step that visited them.
    """

    acceptance_rate: Float[Array, ""]
    num_changed: Int[Array, ""]


def init(
    position: Int[Array, " N"], logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]], model=None
) -> ClozeState:
    """Create the chain state at ``position`` (checked against ``model``'s N and K when given).

    Example:
        >>> import jax.numpy as jnp
        >>> init(jnp.array([0, 1, 1]), lambda x: -jnp.sum(x) * 1.0).logdensity.item()
        -2.0
    """
    if model is not None:
        check_model(model)
        position = check_position(position, model.num_positions, model.num_categories, "position")
    else:
        position = jnp.asarray(position)
        if not jnp.issubdtype(position.dtype, jnp.integer) or position.ndim != 1:
            raise TypeError(f"position must be one integer sequence Int[N], got {position.dtype}{list(position.shape)}")
    return ClozeState(position, safe_logdensity(logdensity_fn(position)))


def build_kernel(mode: str = "gibbs"):
    """Build a cloze sweep kernel.

    Args:
        mode: ``"gibbs"`` (exact heat-bath update of each position) or ``"mh"`` (propose from the
            model's conditional ``p(x_i | x_{<i})``, Metropolis–Hastings corrected).

    Returns:
        ``kernel(rng_key, state, logdensity_fn, model, positions) -> (state, info)``, a pure
        function; ``model`` is an ``arjax.Autoregressive`` and ``positions`` a 1-D integer array of
        distinct positions, visited in order.

    Example:
        >>> import functools, jax, jax.numpy as jnp
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> p = Autoregressive(MADE(num_positions=4, num_categories=3, key=jax.random.key(0)))
        >>> kernel = functools.partial(build_kernel("mh"), model=p, positions=jnp.array([1, 2]))
        >>> state = init(jnp.zeros(4, jnp.int32), p.log_prob)
        >>> state, info = kernel(jax.random.key(1), state, p.log_prob)
        >>> state.position[jnp.array([0, 3])].tolist()
        [0, 0]
    """
    check_mode(mode)
    update = _gibbs_update if mode == "gibbs" else _mh_update

    def kernel(
        rng_key: PRNGKeyArray,
        state: ClozeState,
        logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
        model,
        positions: Int[Array, " M"],
    ) -> tuple[ClozeState, ClozeInfo]:
        positions = jnp.asarray(positions, jnp.int32)
        logdensity_dtype = state.logdensity.dtype

        def visit(carry, inputs):
            position, logdensity = carry
            key, i = inputs
            new_position, new_logdensity, acceptance = update(key, position, logdensity, i, logdensity_fn, model)
            changed = new_position[i] != position[i]
            return (new_position, new_logdensity.astype(logdensity_dtype)), (acceptance, changed)

        keys = jax.random.split(rng_key, positions.shape[0])
        (position, logdensity), (acceptance, changed) = lax.scan(
            visit, (state.position, state.logdensity), (keys, positions)
        )
        return ClozeState(position, logdensity), ClozeInfo(jnp.mean(acceptance), jnp.sum(changed, dtype=jnp.int32))

    return kernel


def as_top_level_api(
    logdensity_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
    model: Distribution,
    positions: Sequence[int] | Int[Array, " M"] | None = None,
    mode: str = "gibbs",
) -> SamplingAlgorithm:
    r"""Cloze sampler of ``π ∝ exp(logdensity_fn)``: each step sweeps ``positions`` once.

    Args:
        logdensity_fn: ``ln π(x)`` up to a constant, for one sequence ``Int[N]``; NaN counts as ``-inf``.
        model: an ``arjax.Autoregressive`` with ``batch_shape == ()``: its ``allowed`` rule masks
            tokens, and in ``mode="mh"`` its conditionals propose.
        positions: distinct positions to resample, in visiting order (static: a sequence or a
            concrete array); ``None`` sweeps all ``N``. The other positions never change.
        mode: ``"gibbs"`` or ``"mh"``.

    Returns:
        A ``blackjax.base.SamplingAlgorithm``: ``init(position)`` and ``step(rng_key, state)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> p = Autoregressive(MADE(num_positions=5, num_categories=3, key=jax.random.key(0)))
        >>> alg = as_top_level_api(p.log_prob, p, positions=[3, 4], mode="gibbs")
        >>> state = alg.init(jnp.array([2, 1, 0, 0, 0]))
        >>> state, info = jax.jit(alg.step)(jax.random.key(1), state)
        >>> state.position[:3].tolist(), float(info.acceptance_rate)
        ([2, 1, 0], 1.0)
    """
    check_mode(mode)
    check_model(model)
    positions = check_positions(positions, model.num_positions)
    return build_sampling_algorithm(
        build_kernel(mode), init, logdensity_fn, init_args=(model,), kernel_args=(model, jnp.asarray(positions))
    )


def check_mode(mode) -> str:
    """Return ``mode`` if it is one of ``MODES``, else raise ``ValueError``."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def check_positions(positions, num_positions: int) -> np.ndarray:
    """Return ``positions`` as a static ``int32`` numpy array of distinct indices in ``0..N-1``, or raise.

    ``None`` means all positions.

    >>> check_positions([2, 0], 3).tolist()
    [2, 0]
    """
    if positions is None:
        return np.arange(num_positions, dtype=np.int32)
    try:
        values = np.asarray(positions)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        raise TypeError("positions must be static (a sequence of ints or a concrete array), not traced") from None
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise TypeError(f"positions must be a 1-D sequence of ints, got {positions!r}")
    if values.size == 0:
        raise ValueError("positions must name at least one position, got an empty sequence")
    bad = values[(values < 0) | (values >= num_positions)]
    if bad.size:
        raise ValueError(f"positions must lie in 0..{num_positions - 1}, got {bad.tolist()}")
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"positions must be distinct, got duplicates {unique[counts > 1].tolist()}")
    return values.astype(np.int32)


def check_model(model) -> None:
    """Raise unless ``model`` is an ``arjax.Autoregressive``-like distribution with ``batch_shape == ()``."""
    if not callable(getattr(model, "conditional_log_probs", None)) or not isinstance(
        getattr(model, "num_categories", None), int
    ):
        raise TypeError(f"model must be an arjax.Autoregressive distribution, got {type(model).__name__}")
    if tuple(model.batch_shape) != ():
        raise ValueError(f"model must have batch_shape () (one distribution over sequences), got {model.batch_shape}")


def _gibbs_update(key, position, logdensity, i, logdensity_fn, model):
    num_categories = model.num_categories
    others = (position[i] + jnp.arange(1, num_categories, dtype=position.dtype)) % num_categories
    candidates = jnp.broadcast_to(position, (num_categories - 1,) + position.shape).at[:, i].set(others)
    other_weights = jax.vmap(lambda x: safe_logdensity(logdensity_fn(x)))(candidates)
    log_weights = jnp.zeros(num_categories, other_weights.dtype).at[others].set(other_weights)
    log_weights = log_weights.at[position[i]].set(logdensity.astype(other_weights.dtype))
    allowed_row = _allowed_row(model, position, i)
    if allowed_row is not None:
        log_weights = jnp.where(allowed_row, log_weights, -jnp.inf)
    possible = jnp.any(log_weights > -jnp.inf)
    token = jnp.where(possible, jax.random.categorical(key, log_weights), position[i]).astype(position.dtype)
    new_logdensity = jnp.where(possible, log_weights[token], logdensity)
    return position.at[i].set(token), new_logdensity, jnp.ones((), log_weights.dtype)


def _mh_update(key, position, logdensity, i, logdensity_fn, model):
    key_propose, key_accept = jax.random.split(key)
    log_q = model.conditional_log_probs(position)[i]
    token = jax.random.categorical(key_propose, log_q).astype(position.dtype)
    proposed = position.at[i].set(token)
    proposed_logdensity = safe_logdensity(logdensity_fn(proposed))
    log_ratio = (proposed_logdensity + log_q[position[i]]) - (logdensity + log_q[token])
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    return (
        jnp.where(accept, proposed, position),
        jnp.where(accept, proposed_logdensity, logdensity),
        jnp.exp(jnp.minimum(log_ratio, 0.0)),
    )


def _allowed_row(model, position, i):
    rule = getattr(model, "allowed", None)
    return None if rule is None else rule(position, i)
