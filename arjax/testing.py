"""Exactness checks users can run on their own nets and distributions."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from arjax.families.layout import net_layout

__all__ = ["all_sequences", "sequence_index", "chi_square_pvalue", "check_autoregressive", "check_normalized"]

_MAX_ENUMERATION = 2**16


def all_sequences(num_positions: int, num_categories: int) -> Int[Array, "M N"]:
    """Every sequence of ``{0..K-1}^N`` in lexicographic order, ``M = K**N ≤ 2**16``.

    >>> all_sequences(2, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    count = num_categories**num_positions
    if count > _MAX_ENUMERATION:
        raise ValueError(f"enumeration needs K**N ≤ {_MAX_ENUMERATION}, got {num_categories}**{num_positions}")
    grid = np.array(list(itertools.product(range(num_categories), repeat=num_positions)), np.int32)
    return jnp.asarray(grid.reshape(count, num_positions))


def sequence_index(x, num_categories: int) -> np.ndarray:
    """Position of each sequence in the lexicographic order of ``all_sequences``.

    >>> sequence_index(np.array([[0, 0], [1, 0], [1, 1]]), 2).tolist()
    [0, 2, 3]
    """
    x = np.asarray(x)
    weights = num_categories ** np.arange(x.shape[-1] - 1, -1, -1)
    return x @ weights


def chi_square_pvalue(samples, probs, min_expected: float = 5.0) -> float:
    """Pearson chi-square p-value of ``samples`` (token sequences) against exact ``probs`` (lexicographic order).

    Cells expected to hold fewer than ``min_expected`` draws are pooled into one cell. Needs SciPy.

    >>> x = np.array([[0, 0]] * 25 + [[0, 1]] * 25 + [[1, 0]] * 25 + [[1, 1]] * 25)
    >>> chi_square_pvalue(x, np.full(4, 0.25))
    1.0
    """
    from scipy import stats

    probs = np.asarray(probs, np.float64)
    probs = probs / probs.sum()
    num_categories = round(len(probs) ** (1 / np.asarray(samples).shape[-1]))
    counts = np.bincount(sequence_index(samples, num_categories), minlength=len(probs))
    expected = probs * counts.sum()
    big = expected >= min_expected
    observed = np.append(counts[big], counts[~big].sum())
    expected = np.append(expected[big], expected[~big].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    return float(stats.chisquare(observed, expected).pvalue)


def check_autoregressive(
    net,
    key: PRNGKeyArray,
    *,
    context: Float[Array, "..."] | None = None,
    num_inputs: int = 3,
    jacobian: bool = True,
    atol: float = 1e-6,
) -> Bool[Array, "N N"]:
    """Assert that logits row ``i`` of ``net`` never depends on ``x_j`` for ``j >= i``.

    Two independent probes at ``num_inputs`` random sequences: (1) perturbation — set ``x_j`` to
    every other token and compare the rows; (2) ``jax.jacfwd`` of the logits with respect to the
    one-hot input rows (needs a net that accepts ``Float[N, K]`` rows, as arjax nets do; pass
    ``jacobian=False`` otherwise). A change larger than ``atol · (1 + max|logits|)`` counts.

    A net with real, circular or positive positions (``families``) is probed at random valid
    values: (1) each ``x_j`` redrawn from its family, (2) the Jacobian of the parameter rows with
    respect to the values ``x`` themselves.

    Returns:
        ``D[i, j]``: whether row ``i`` was seen to depend on ``x_j`` (only ``j < i`` may be true).

    Raises:
        AssertionError: listing the offending ``(i, j)`` pairs.

    Example:
        >>> import jax
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=5, num_categories=3, key=jax.random.key(0))
        >>> bool(check_autoregressive(net, jax.random.key(1))[4, 0])
        True
    """
    if net_layout(net).num_categories is None:
        return _check_autoregressive_values(net, key, context, num_inputs, jacobian, atol)
    n, k = net.num_positions, net.num_categories
    seen = np.zeros((n, n), bool)
    for input_key in jax.random.split(key, num_inputs):
        x = jax.random.randint(input_key, (n,), 0, k, jnp.int32)
        seen |= _perturbation_dependence(net, x, context, atol)
        if jacobian:
            seen |= _jacobian_dependence(net, x, context, atol)
    return _report_leaks(net, seen)


def _report_leaks(net, seen: np.ndarray) -> Bool[Array, "N N"]:
    leaks = np.argwhere(np.triu(seen))
    if leaks.size:
        pairs = ", ".join(f"row {i} <- x_{j}" for i, j in leaks[:20])
        raise AssertionError(f"{type(net).__name__} is not autoregressive: {pairs}")
    return jnp.asarray(seen)


def _check_autoregressive_values(net, key, context, num_inputs, jacobian, atol) -> Bool[Array, "N N"]:
    layout = net_layout(net)
    n = net.num_positions
    seen = np.zeros((n, n), bool)
    for input_key in jax.random.split(key, num_inputs):
        base_key, other_key = jax.random.split(input_key)
        x, other = _random_values(layout, base_key), _random_values(layout, other_key)
        perturbed = jnp.where(jnp.eye(n, dtype=bool), other[None, :], x[None, :])
        base, changed = _perturbed_logits(net, x, perturbed, context)
        tol = atol * (1 + float(jnp.max(jnp.abs(base))))
        seen |= np.asarray(jnp.max(jnp.abs(changed - base), axis=-1) > tol).T
        if jacobian:
            base, jac = _values_jacobian(net, x, context)
            seen |= np.asarray(jnp.max(jnp.abs(jac), axis=1) > atol * (1 + float(jnp.max(jnp.abs(base)))))
    return _report_leaks(net, seen)


def _random_values(layout, key) -> Float[Array, " N"]:
    """One valid value per position, drawn from each family at its initial parameters."""

    @jax.jit
    def draw(key):
        u = jax.random.uniform(key, (layout.num_positions, layout.num_uniforms))
        params = jnp.take(jnp.asarray(layout.ragged_init_bias, u.dtype), layout.param_rows, mode="fill", fill_value=0)
        return jax.vmap(lambda i, p, v: layout.sample_at(i, p, v, None)[0])(jnp.arange(layout.num_positions), params, u)

    return draw(key)


@eqx.filter_jit
def _values_jacobian(net, x, context):
    return net(x, context), jax.jacfwd(lambda v: net(v, context))(x)


def check_normalized(dist, *, atol: float = 1e-5) -> Float[Array, "..."]:
    """Assert ``Σ_x exp(log_prob(x)) = 1`` by enumerating all ``K**N ≤ 2**16`` sequences.

    Works for any batch shape; returns the total probability per batch element.

    >>> import jax
    >>> from arjax import Autoregressive
    >>> from arjax.nn import MADE
    >>> total = check_normalized(Autoregressive(MADE(num_positions=6, num_categories=2, key=jax.random.key(0))))
    >>> abs(float(total) - 1) < 1e-5
    True
    """
    values = dist.enumerate_support(expand=False)
    total = jnp.exp(jax.nn.logsumexp(dist.log_prob(values), axis=0))
    error = float(jnp.max(jnp.abs(total - 1)))
    if not error <= atol:
        raise AssertionError(f"probabilities sum to {np.asarray(total)}, off from 1 by {error:.3g} > atol={atol}")
    return total


def _perturbation_dependence(net, x, context, atol) -> np.ndarray:
    n, k = net.num_positions, net.num_categories
    positions = np.repeat(np.arange(n), k - 1)
    shifts = np.tile(np.arange(1, k), n)
    perturbed = jnp.asarray(np.asarray(x)[None].repeat(len(positions), 0))
    perturbed = perturbed.at[np.arange(len(positions)), positions].set((x[positions] + shifts) % k)
    base, changed = _perturbed_logits(net, x, perturbed, context)
    tol = atol * (1 + float(jnp.max(jnp.abs(base))))
    rows_changed = np.asarray(jnp.max(jnp.abs(changed - base), axis=-1) > tol)
    seen = np.zeros((n, n), bool)
    for perturbation, j in enumerate(positions):
        seen[:, j] |= rows_changed[perturbation]
    return seen


def _jacobian_dependence(net, x, context, atol) -> np.ndarray:
    base, jac = _logits_jacobian(net, x, context)
    tol = atol * (1 + float(jnp.max(jnp.abs(base))))
    return np.asarray(jnp.max(jnp.abs(jac), axis=(1, 3)) > tol)


@eqx.filter_jit
def _perturbed_logits(net, x, perturbed, context):
    return net(x, context), jax.vmap(lambda y: net(y, context))(perturbed)


@eqx.filter_jit
def _logits_jacobian(net, x, context):
    rows = jax.nn.one_hot(x, net.num_categories)
    return net(x, context), jax.jacfwd(lambda r: net(r, context))(rows)
