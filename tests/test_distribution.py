"""Exactness of ``Autoregressive`` by enumeration of every sequence on small N."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import chi_square_pvalue
from scipy.special import log_softmax, logsumexp

from arjax import Autoregressive, sample_and_log_prob
from arjax.nn import MADE, MeanField
from arjax.testing import all_sequences, check_normalized

SIZES = [(8, 2), (4, 5)]


def _net(kind, n, k, seed=0, **kw):
    key = jax.random.key(seed)
    if kind == "made":
        return MADE(num_positions=n, num_categories=k, width=24, depth=2, key=key, **kw)
    return MeanField(num_positions=n, num_categories=k, init_scale=1.0, key=key, **kw)


@pytest.fixture(scope="module", params=[(kind, n, k) for kind in ("made", "mean_field") for n, k in SIZES],
                ids=lambda p: f"{p[0]}-N{p[1]}-K{p[2]}")
def enumerated(request):
    kind, n, k = request.param
    dist = Autoregressive(_net(kind, n, k))
    xs = all_sequences(n, k)
    return dist, np.asarray(xs), np.asarray(dist.log_prob(xs), np.float64)


def test_probabilities_sum_to_one_over_all_sequences(enumerated):
    _, _, log_p = enumerated
    assert abs(np.exp(logsumexp(log_p)) - 1) < 1e-5


def test_log_prob_is_the_sum_of_conditionals_picked_at_x(enumerated):
    dist, xs, log_p = enumerated
    logits = np.asarray(jax.vmap(dist.net)(jnp.asarray(xs)), np.float64)
    expected = np.take_along_axis(log_softmax(logits, axis=-1), xs[..., None], axis=-1)[..., 0].sum(-1)
    np.testing.assert_allclose(log_p, expected, atol=1e-5)
    conditionals = np.asarray(dist.conditional_log_probs(jnp.asarray(xs[:7])))
    np.testing.assert_allclose(conditionals, log_softmax(logits[:7], axis=-1), atol=1e-5)


def test_sample_frequencies_match_exact_probabilities(enumerated):
    dist, xs, log_p = enumerated
    samples, sample_log_p = dist.sample_and_log_prob(jax.random.key(7), (100_000,))
    assert samples.dtype == jnp.int32
    assert chi_square_pvalue(samples, np.exp(log_p)) > 1e-3
    index = np.asarray(samples[:500]) @ (xs.max() + 1) ** np.arange(xs.shape[1] - 1, -1, -1)
    np.testing.assert_allclose(sample_log_p[:500], log_p[index], atol=1e-4)


def test_chi_square_test_rejects_samples_of_another_distribution(enumerated):
    dist, _, log_p = enumerated
    other = Autoregressive(type(dist.net)(**_config(dist.net), key=jax.random.key(99)))
    samples = other.sample(jax.random.key(7), (100_000,))
    assert chi_square_pvalue(samples, np.exp(log_p)) < 1e-6


def _config(net):
    if isinstance(net, MADE):
        return dict(num_positions=net.num_positions, num_categories=net.num_categories, width=24, depth=2)
    return dict(num_positions=net.num_positions, num_categories=net.num_categories, init_scale=1.0)


def test_same_key_same_samples_and_different_keys_differ():
    dist = Autoregressive(_net("made", 8, 2))
    a = dist.sample(jax.random.key(1), (64,))
    np.testing.assert_array_equal(a, dist.sample(jax.random.key(1), (64,)))
    assert (a != dist.sample(jax.random.key(2), (64,))).any()


def test_sample_shape_and_batch_shape_from_context():
    net = MADE(num_positions=5, num_categories=3, width=16, depth=1, context_size=2, key=jax.random.key(0))
    context = jnp.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    dist = Autoregressive(net, context)
    assert dist.batch_shape == (3,) and dist.event_shape == (5,)
    x, log_p = dist.sample_and_log_prob(jax.random.key(0), (4, 2))
    assert x.shape == (4, 2, 3, 5) and log_p.shape == (4, 2, 3)
    np.testing.assert_allclose(dist.log_prob(x), log_p, atol=1e-5)
    total = check_normalized(dist)
    assert total.shape == (3,)
    single = Autoregressive(net, context[1]).log_prob(x[:, :, 1])
    np.testing.assert_allclose(dist.log_prob(x)[:, :, 1], single, atol=1e-6)
    assert not np.allclose(dist.log_prob(x[:, :, :1]), log_p[:, :, :1].repeat(3, -1))


@pytest.mark.parametrize(
    "net",
    [
        MeanField(num_positions=16, num_categories=3, init_scale=1.0, key=jax.random.key(0)),
        MADE(num_positions=64, num_categories=2, width=32, depth=0, key=jax.random.key(1)),
        MADE(num_positions=64, num_categories=2, width=32, depth=2, residual=True, key=jax.random.key(2)),
        MADE(num_positions=9, num_categories=4, width=16, depth=1, context_size=2, key=jax.random.key(3)),
    ],
    ids=["mean_field", "made_depth0", "made_depth2_residual", "made_context"],
)
def test_cached_and_generic_paths_give_identical_samples(net):
    context = None if net.context_shape is None else jnp.array([[0.5, -1.0], [2.0, 0.0]])
    a, lp_a = sample_and_log_prob(net, jax.random.key(3), (50,), context=context, cached=True)
    b, lp_b = sample_and_log_prob(net, jax.random.key(3), (50,), context=context, cached=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(lp_a, lp_b, atol=1e-5)
    np.testing.assert_allclose(Autoregressive(net, context).log_prob(a), lp_a, atol=1e-4)


def test_static_allowed_table_gives_disallowed_tokens_probability_zero():
    n, k = 4, 4
    allowed = np.ones((n, k), bool)
    allowed[0, 0] = allowed[2, 1:3] = allowed[3, 3] = False
    dist = Autoregressive(_net("made", n, k), allowed=jnp.asarray(allowed))
    xs = np.asarray(all_sequences(n, k))
    log_p = np.asarray(dist.log_prob(jnp.asarray(xs)), np.float64)
    valid = allowed[np.arange(n), xs].all(axis=1)
    assert np.all(np.isneginf(log_p[~valid])) and np.all(np.isfinite(log_p[valid]))
    assert abs(np.exp(logsumexp(log_p[valid])) - 1) < 1e-5
    samples = dist.sample(jax.random.key(0), (50_000,))
    assert allowed[np.arange(n), np.asarray(samples)].all()
    assert chi_square_pvalue(samples, np.exp(log_p)) > 1e-3


def _no_repeat_rule(x, i):
    """Prefix-dependent grammar: a token may not repeat the previous one."""
    return jnp.where(i > 0, jnp.arange(3) != x[jnp.maximum(i - 1, 0)], True)


def test_prefix_dependent_allowed_rule_is_exact():
    n, k = 5, 3
    dist = Autoregressive(_net("made", n, k), allowed=_no_repeat_rule)
    xs = np.asarray(all_sequences(n, k))
    log_p = np.asarray(dist.log_prob(jnp.asarray(xs)), np.float64)
    valid = (np.diff(xs, axis=1) != 0).all(axis=1)
    assert np.all(np.isneginf(log_p[~valid]))
    assert abs(np.exp(logsumexp(log_p[valid])) - 1) < 1e-5
    samples = dist.sample(jax.random.key(0), (30_000,))
    assert (np.diff(np.asarray(samples), axis=1) != 0).all()
    assert chi_square_pvalue(samples, np.exp(log_p)) > 1e-3


def test_works_under_jit_vmap_and_grad_of_parameters():
    x = jnp.array([[0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1]])

    def loss(net):
        return -Autoregressive(net).log_prob(x).mean()

    net = _net("made", 6, 2)
    value, grads = jax.jit(jax.value_and_grad(loss))(net)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
    eps = 1e-3
    bumped = jax.tree_util.tree_map(lambda p, g: p - eps * g, net, grads)
    assert loss(bumped) < value

    nets = jax.vmap(lambda k: MeanField(6, 2, init_scale=1.0, key=k))(jax.random.split(jax.random.key(0), 3))
    per_net = jax.vmap(lambda m: Autoregressive(m).log_prob(x))(nets)
    assert per_net.shape == (3, 2)
    manual = [Autoregressive(jax.tree_util.tree_map(lambda a: a[i], nets)).log_prob(x) for i in range(3)]
    np.testing.assert_allclose(per_net, np.stack(manual), atol=1e-6)

    samples = jax.jit(lambda m, key: Autoregressive(m).sample(key, (5,)))(net, jax.random.key(0))
    np.testing.assert_array_equal(samples, Autoregressive(net).sample(jax.random.key(0), (5,)))


def test_allowed_masks_keep_gradients_finite():
    allowed = jnp.ones((6, 2), bool).at[1, 0].set(False)
    x = jnp.array([[0, 1, 1, 0, 1, 0]])
    grads = jax.grad(lambda m: Autoregressive(m, allowed=allowed).log_prob(x).sum())(_net("made", 6, 2))
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
