"""Sequences with real, circular and positive positions (and tokens beside them) are exact distributions:
normalised by quadrature, sampled exactly (Rosenblatt), autoregressive, cached = generic, NumPyro's rules."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from scipy import stats

from arjax import Autoregressive, sample_and_log_prob
from arjax.families import Categorical, GaussianMixture, LogNormalMixture, VonMisesMixture, unit_circle
from arjax.nn import MADE, Transformer
from arjax.testing import check_autoregressive

CONTINUOUS = (GaussianMixture(2), VonMisesMixture(2), LogNormalMixture(2))
MIXED = (Categorical(3), GaussianMixture(2), Categorical(2))


def _net(kind, families, key=jax.random.key(0), context_size=None):
    """A small net whose conditionals depend visibly on the prefix (the Transformer's weights scaled up)."""
    if kind == "made":
        return MADE(num_positions=len(families), families=families, width=16, depth=2, context_size=context_size,
                    key=key)  # fmt: skip
    net = Transformer(num_positions=len(families), families=families, d_model=16, num_heads=2, num_layers=1,
                      context_size=context_size, key=key)  # fmt: skip
    return jax.tree.map(lambda w: 2 * w if isinstance(w, jax.Array) and w.ndim >= 2 else w, net)


def _nodes(family):
    """Quadrature nodes and weights over one position's support."""
    if isinstance(family, Categorical):
        return np.arange(family.num_categories, dtype=float), np.ones(family.num_categories)
    if isinstance(family, VonMisesMixture):
        return np.arange(32) / 32, np.full(32, 1 / 32)
    u = np.linspace(-14, 14, 121)
    w = np.full(u.size, u[1] - u[0])
    if isinstance(family, LogNormalMixture):
        return np.exp(u), w * np.exp(u)
    return u, w


@pytest.mark.parametrize("families", [CONTINUOUS, MIXED], ids=["continuous", "mixed"])
@pytest.mark.parametrize("kind", ["made", "transformer"])
def test_density_integrates_to_one_by_quadrature(kind, families):
    p = Autoregressive(_net(kind, families))
    nodes, weights = zip(*(_nodes(f) for f in families))
    grid = np.stack(np.meshgrid(*nodes, indexing="ij"), -1).reshape(-1, len(families))
    w = np.prod(np.stack(np.meshgrid(*weights, indexing="ij"), -1).reshape(-1, len(families)), -1)
    density = np.exp(np.asarray(jax.jit(p.log_prob)(jnp.asarray(grid, jnp.float32)), float))
    assert abs(np.sum(density * w) - 1) < 1e-3


@pytest.mark.parametrize("kind", ["made", pytest.param("transformer", marks=pytest.mark.slow)])
def test_rosenblatt_transform_of_exact_samples_is_iid_uniform_and_another_nets_samples_fail_it(kind):
    p = Autoregressive(_net(kind, CONTINUOUS))
    other = Autoregressive(_net(kind, CONTINUOUS, key=jax.random.key(7)))
    x = p.sample(jax.random.key(1), (4000,))
    u = np.asarray(p.conditional_cdfs(x))
    assert min(stats.kstest(u[:, i], "uniform").pvalue for i in range(3)) > 1e-3
    correlation = np.corrcoef(u.T)[np.triu_indices(3, 1)]
    assert np.all(np.abs(correlation) < 4 / np.sqrt(len(u)))
    u_other = np.asarray(p.conditional_cdfs(other.sample(jax.random.key(1), (4000,))))
    assert min(stats.kstest(u_other[:, i], "uniform").pvalue for i in range(3)) < 1e-6


@pytest.mark.parametrize("kind", ["made", "transformer"])
def test_cached_and_generic_sampling_agree_for_the_same_key(kind):
    net = _net(kind, (*MIXED, *CONTINUOUS), context_size=2)
    context = jnp.array([0.5, -1.0])
    cached = sample_and_log_prob(net, jax.random.key(3), (200,), context=context, cached=True)
    generic = sample_and_log_prob(net, jax.random.key(3), (200,), context=context, cached=False)
    tokens = np.array([0, 2])
    np.testing.assert_array_equal(cached[0][:, tokens], generic[0][:, tokens])
    np.testing.assert_allclose(cached[0], generic[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cached[1], generic[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["made", "transformer"])
def test_parameters_of_position_i_depend_only_on_earlier_values(kind):
    net = _net(kind, (*CONTINUOUS, Categorical(3)), context_size=2)
    seen = np.asarray(check_autoregressive(net, jax.random.key(2), context=jnp.ones(2), num_inputs=2))
    assert np.all(seen[np.tril_indices(4, -1)])


def test_log_prob_is_differentiable_in_the_values_and_matches_finite_differences():
    p = Autoregressive(_net("made", (GaussianMixture(2), GaussianMixture(2), LogNormalMixture(1))))
    x = jnp.array([0.3, -0.7, 1.4])
    grad = jax.grad(p.log_prob)(x)
    eps = 1e-2
    numeric = [(p.log_prob(x.at[i].add(eps)) - p.log_prob(x.at[i].add(-eps))) / (2 * eps) for i in range(3)]
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-3)


def test_supports_follow_the_families():
    assert Autoregressive(_net("made", (GaussianMixture(1),) * 3)).support is constraints.real_vector
    positive = Autoregressive(_net("made", (LogNormalMixture(1),) * 3)).support
    assert positive.base_constraint is constraints.positive and positive.event_dim == 1
    mixed = Autoregressive(_net("made", (*MIXED, VonMisesMixture(1)))).support
    assert mixed.event_dim == 1 and mixed.is_discrete
    assert [type(c) for c in mixed.base_constraint.cseq][-1] is type(unit_circle)
    ok = mixed(jnp.array([[2.0, -3.0, 1.0, 0.5], [2.5, 0.0, 1.0, 0.5], [2.0, 0.0, 1.0, 1.5]]))
    assert ok.tolist() == [True, False, False]


def test_out_of_support_values_warn_and_give_minus_infinity_like_numpyro():
    p = Autoregressive(_net("made", CONTINUOUS), validate_args=True)
    x = jnp.array([[0.1, 0.5, 2.0], [0.1, 0.5, -2.0], [jnp.nan, 0.5, 2.0], [0.1, 1.5, 2.0]])
    control = dist.LogNormal(0.0, 1.0, validate_args=True)
    with pytest.warns(UserWarning, match="Out-of-support values provided to log prob method"):
        log_p = p.log_prob(x)
    with pytest.warns(UserWarning, match="Out-of-support values provided to log prob method"):
        assert np.isneginf(control.log_prob(-2.0))
    assert np.isfinite(log_p[0]) and np.all(np.isneginf(log_p[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(jax.jit(p.log_prob)(x), log_p)
        np.testing.assert_array_equal(Autoregressive(p.net, validate_args=False).log_prob(x), log_p)


def test_batch_shape_from_context_and_conditionals_as_numpyro_distributions():
    net = _net("transformer", MIXED, context_size=2)
    p = Autoregressive(net, jax.random.normal(jax.random.key(4), (5, 2)))
    x = p.sample(jax.random.key(5), (3,))
    assert x.shape == (3, 5, 3) and x.dtype == jnp.float32 and p.batch_shape == (5,)
    assert p.log_prob(x).shape == (3, 5) and p.conditional_params(x).shape == (3, 5, 3, 6)
    second = p.conditional_distribution(x, 1)
    assert isinstance(second, dist.MixtureSameFamily)
    np.testing.assert_allclose(second.log_prob(x[..., 1]), _per_position_log_probs(p, x)[..., 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(p.to_distrax().sample(seed=jax.random.key(5), sample_shape=3), x)


def _per_position_log_probs(p, x):
    """ln p(x_i | x_<i) from the conditionals as NumPyro distributions, one position at a time."""
    def value(i):
        return x[..., i].astype(jnp.int32) if p.families[i].is_discrete else x[..., i]

    return jnp.stack([p.conditional_distribution(x, i).log_prob(value(i)) for i in range(p.num_positions)], -1)


def test_log_prob_is_the_sum_of_the_numpyro_conditionals():
    allowed = jnp.array([[True] * 3] * 3 + [[True, False, True]])
    p = Autoregressive(_net("made", (*CONTINUOUS, Categorical(3))), allowed=allowed)
    x = p.sample(jax.random.key(6), (50,))
    assert not np.any(np.asarray(x[:, 3]) == 1)
    by_position = jax.jit(lambda x: _per_position_log_probs(p, x))(x)  # one compilation, not one per eager op
    np.testing.assert_allclose(p.log_prob(x), by_position.sum(-1), rtol=1e-5, atol=1e-4)


def test_nan_context_fails_validation():
    net = _net("made", CONTINUOUS, context_size=2)
    with numpyro.validation_enabled(), pytest.raises(ValueError, match="invalid context parameter"):
        Autoregressive(net, jnp.array([0.0, jnp.nan]))


def test_allowed_needs_token_positions():
    with pytest.raises(ValueError, match="no token"):
        Autoregressive(_net("made", CONTINUOUS), allowed=jnp.ones((3, 2), bool))
