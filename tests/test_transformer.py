"""Causal Transformer: autoregressive structure, cached decoding, exact normalisation, errors.

Every computation goes through a jitted helper: on CPU, compiling many small eager ops costs
far more than running these tiny nets.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import chi_square_pvalue, sequence_index
from jax import lax
from jax.flatten_util import ravel_pytree

import arjax
from arjax.nn.transformer import KVCache, Transformer, _causal_attend
from arjax.sampling import sample_and_log_prob
from arjax.testing import all_sequences, check_autoregressive

N, K, CONTEXT_SIZE = 6, 3, 3
NUM_SAMPLES = 50_000


@pytest.mark.parametrize("with_context", [False, True])
def test_changing_a_token_never_changes_rows_up_to_it(with_context):
    net, context = _random_net(N, K, with_context, seed=0)
    x = _tokens(N, K, seed=1)
    perturbed = [(j, v) for j in range(N) for v in range(K) if v != x[j]]
    batch = np.stack([x] + [np.where(np.arange(N) == j, v, x) for j, v in perturbed])
    logits = np.asarray(_mapped_logits(net, jnp.asarray(batch), context))
    for (j, _), changed in zip(perturbed, logits[1:]):
        np.testing.assert_array_equal(changed[: j + 1], logits[0, : j + 1])
        if j < N - 1:
            assert np.any(changed[j + 1 :] != logits[0, j + 1 :])


def test_first_row_depends_on_the_context():
    net, context = _random_net(N, K, True, seed=4)
    x = jnp.asarray(_tokens(N, K, seed=5))
    first = np.asarray(_logits(net, x, context))[0]
    shifted = np.asarray(_logits(net, x, context + 1.0))[0]
    assert np.all(np.abs(first - shifted) > 1e-3)


def test_integer_and_one_hot_inputs_give_the_same_logits():
    net, context = _random_net(N, K, True, seed=6)
    x = _tokens(N, K, seed=7)
    one_hot = np.eye(K, dtype=np.float32)[x]
    np.testing.assert_array_equal(_logits(net, jnp.asarray(x), context), _logits(net, jnp.asarray(one_hot), context))


@pytest.mark.parametrize(("n", "with_context"), [(1, True), (N, False)])
def test_decode_step_under_scan_reproduces_every_row_of_the_full_pass(n, with_context):
    net, context = _random_net(n, K, with_context, seed=8)
    x = jnp.asarray(_tokens(n, K, seed=9))
    np.testing.assert_allclose(_teacher_forced_rows(net, x, context), _logits(net, x, context), rtol=1e-5, atol=1e-5)


def test_decode_step_under_vmap_reproduces_a_batch_of_long_sequences():
    n = 64
    net, context = _random_net(n, K, True, seed=10)
    xs = jnp.asarray(np.stack([_tokens(n, K, seed=s) for s in range(4)]))
    contexts = jnp.stack([context, -context, 2 * context, jnp.zeros_like(context)])
    decoded, full = _batched_decode_and_full(net, xs, contexts)
    np.testing.assert_allclose(decoded, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [64, 150])
def test_blocked_causal_attention_equals_masked_full_attention(n):
    """Query blocks that skip the scores above the diagonal blocks give masked full attention's rows."""
    q, k, v = (jax.random.normal(jax.random.key(s), (3, n, 8)) for s in range(3))
    blocked, full = _blocked_and_full_attention(q, k, v)
    np.testing.assert_allclose(blocked, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("n", "k", "with_context"), [(6, 2, False), (3, 4, True)])
def test_probabilities_sum_to_one_over_all_sequences(n, k, with_context):
    net, context = _random_net(n, k, with_context, seed=11)
    probs = _enumerated_probabilities(net, context)
    assert probs.max() > 2 * probs.min()
    assert abs(probs.sum() - 1.0) < 1e-5


def test_cache_has_fixed_shapes_and_starts_empty():
    net, _ = _random_net(7, 2, False, seed=0, d_model=12, num_heads=3, num_layers=3)
    cache = net.init_cache()
    assert isinstance(cache, KVCache)
    assert len(cache.keys) == len(cache.values) == 3
    assert all(a.shape == (3, 4, 7) for a in cache.keys)
    assert all(a.shape == (3, 7, 4) for a in cache.values)
    assert cache.context_embedding.shape == (12,)
    assert not any(np.any(a) for a in cache.keys + cache.values)
    assert net.context_shape is None


def test_constructor_errors_name_the_argument():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="d_model must be divisible by num_heads"):
        Transformer(num_positions=4, num_categories=2, d_model=10, num_heads=4, key=key)
    with pytest.raises(ValueError, match="num_positions"):
        Transformer(num_positions=0, num_categories=2, key=key)
    with pytest.raises(ValueError, match="num_categories"):
        Transformer(num_positions=4, num_categories=2.5, key=key)
    with pytest.raises(ValueError, match="context_size"):
        Transformer(num_positions=4, num_categories=2, context_size=0, key=key)


def test_call_errors_name_the_argument():
    plain, _ = _random_net(N, K, False, seed=0)
    conditional, context = _random_net(N, K, True, seed=0)
    x = jnp.zeros(N, jnp.int32)
    with pytest.raises(ValueError, match="context was given"):
        plain(x, context)
    with pytest.raises(ValueError, match="context of shape"):
        conditional(x)
    with pytest.raises(ValueError, match="context must have shape"):
        conditional(x, jnp.ones(CONTEXT_SIZE + 1))
    with pytest.raises(ValueError, match="context must have shape"):
        conditional.init_cache(jnp.ones((2, CONTEXT_SIZE)))
    with pytest.raises(ValueError, match="context was given"):
        plain.init_cache(context)
    with pytest.raises(ValueError, match="x must have shape"):
        plain(jnp.zeros(N - 1, jnp.int32))
    with pytest.raises(ValueError, match="x must have shape"):
        plain(jnp.zeros((N, K), jnp.int32))
    with pytest.raises(ValueError, match="float x must be one-hot rows of shape"):
        plain(jnp.ones((N, K - 1)))
    with pytest.raises(TypeError, match="x must hold integer tokens"):
        plain(jnp.ones(N, bool))
    with pytest.raises(TypeError, match="i must be an integer scalar"):
        plain.decode_step(plain.init_cache(), jnp.array([0, 1]), 0)
    with pytest.raises(TypeError, match="token must be an integer scalar"):
        plain.decode_step(plain.init_cache(), 1, 0.5)


def test_gradient_of_a_batched_likelihood_matches_finite_differences():
    net, context = _random_net(N, K, True, seed=12)
    xs = jnp.asarray(np.stack([_tokens(N, K, seed=s) for s in range(16)]))
    direction = _gaussian_like(np.random.default_rng(13), net)
    loss, directional, grads = _loss_and_directional_derivative(net, direction, xs, context)
    eps = 1e-3
    plus, minus = (_loss_along(net, direction, xs, context, jnp.float32(s * eps)) for s in (1, -1))
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in map(np.asarray, jax.tree.leaves(grads)))
    assert np.isfinite(loss)
    np.testing.assert_allclose((plus - minus) / (2 * eps), directional, rtol=1e-2)


def test_runs_in_float64_when_x64_is_enabled():
    with jax.enable_x64(True):
        net, context = _random_net(N, K, True, seed=14)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(net))
        x = jnp.asarray(_tokens(N, K, seed=15))
        logits = _logits(net, x, context)
        assert logits.dtype == jnp.float64
        np.testing.assert_allclose(_teacher_forced_rows(net, x, context), logits, rtol=1e-10, atol=1e-10)


def test_a_freshly_initialised_net_is_float32_and_reads_its_input():
    net = _build(N, K, CONTEXT_SIZE, jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(net))
    context = jnp.ones(CONTEXT_SIZE)
    logits = np.asarray(_logits(net, jnp.zeros(N, jnp.int32), context))
    other = np.asarray(_logits(net, jnp.ones(N, jnp.int32), context))
    assert logits.dtype == np.float32 and np.all(np.isfinite(logits))
    np.testing.assert_array_equal(logits[0], other[0])
    assert np.all(logits[1:] != other[1:])


def test_cached_and_uncached_sampling_give_identical_samples():
    net, context = _random_net(64, K, True, seed=16)
    key = jax.random.key(17)
    cached = sample_and_log_prob(net, key, (32,), context=context, cached=True)
    generic = sample_and_log_prob(net, key, (32,), context=context, cached=False)
    np.testing.assert_array_equal(cached[0], generic[0])
    np.testing.assert_allclose(cached[1], generic[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "k", "with_context"), [(3, 4, True), (9, 2, False)])
def test_cached_samples_follow_the_enumerated_distribution(n, k, with_context):
    net, context = _random_net(n, k, with_context, seed=18)
    probs = _enumerated_probabilities(net, context)
    log_p = np.asarray(_distribution_log_prob(net, all_sequences(n, k), context), np.float64)
    np.testing.assert_allclose(log_p, np.log(probs), rtol=1e-5, atol=1e-5)
    samples, sample_log_p = _sample_cached(net, jax.random.key(19), context)
    assert samples.shape == (NUM_SAMPLES, n)
    np.testing.assert_allclose(sample_log_p, log_p[sequence_index(samples, k)], rtol=1e-5, atol=1e-5)
    assert chi_square_pvalue(samples, np.exp(log_p)) > 1e-3


def test_check_autoregressive_with_context_sees_exactly_the_earlier_positions():
    """Perturbation and Jacobian probes (arjax.testing) find every j < i and nothing else."""
    net, context = _random_net(N, K, True, seed=20)
    seen = np.asarray(check_autoregressive(net, jax.random.key(21), context=context, num_inputs=2))
    np.testing.assert_array_equal(seen, np.tril(np.ones((N, N), bool), k=-1))


def _tokens(n, k, *, seed):
    return np.random.default_rng(seed).integers(0, k, n).astype(np.int32)


def _enumerated_probabilities(net, context):
    """Probabilities of all K^N sequences in float64, from the logits of the full pass."""
    n, k = net.num_positions, net.num_categories
    xs = np.array(list(itertools.product(range(k), repeat=n)), np.int32)
    logits = np.asarray(_mapped_logits(net, jnp.asarray(xs), context), np.float64)
    log_softmax = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return np.exp(np.take_along_axis(log_softmax, xs[..., None], axis=-1)[..., 0].sum(-1))


def _random_net(n, k, with_context, *, seed, **sizes):
    """A small net with Gaussian parameters, far from the near-uniform initialisation.

    The parameters are drawn with NumPy into the constructor's abstract shapes, which keeps the
    suite free of per-size compilations of the initialiser.
    """
    context_size = CONTEXT_SIZE if with_context else None
    shapes = eqx.filter_eval_shape(_build, n, k, context_size, jax.random.key(0), **sizes)
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    net = jax.tree.unflatten(treedef, [_draw(rng, path, leaf) for path, leaf in leaves])
    context = None if context_size is None else jnp.asarray(rng.normal(size=context_size).astype(net.head_bias.dtype))
    return net, context


def _draw(rng, path, leaf):
    name = jax.tree_util.keystr(path)
    mean = 1.0 if "norm" in name and name.endswith("weight") else 0.0
    return jnp.asarray((mean + 0.3 * rng.normal(size=leaf.shape)).astype(leaf.dtype))


@eqx.filter_jit
def _build(n, k, context_size, key, d_model=16, num_heads=2, num_layers=2):
    return Transformer(
        num_positions=n,
        num_categories=k,
        d_model=d_model,
        num_heads=num_heads,
        num_layers=num_layers,
        context_size=context_size,
        key=key,
    )


def _gaussian_like(rng, tree):
    return jax.tree.map(lambda leaf: jnp.asarray(rng.normal(size=leaf.shape).astype(leaf.dtype)), tree)


@eqx.filter_jit
def _distribution_log_prob(net, xs, context):
    return arjax.Autoregressive(net, context).log_prob(xs)


@eqx.filter_jit
def _sample_cached(net, key, context):
    return sample_and_log_prob(net, key, (NUM_SAMPLES,), context=context, cached=True)


@jax.jit
def _blocked_and_full_attention(q, k, v):
    scores = jnp.einsum("hme,hse->hms", q, k) / np.sqrt(q.shape[-1])
    causal = np.tril(np.ones((q.shape[1], q.shape[1]), bool))
    full = jnp.einsum("hms,hse->hme", jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1), v)
    return _causal_attend(q, k.swapaxes(1, 2), v), full


@eqx.filter_jit
def _logits(net, x, context):
    return net(x, context)


@eqx.filter_jit
def _mapped_logits(net, xs, context):
    return lax.map(lambda x: net(x, context), xs)


@eqx.filter_jit
def _teacher_forced_rows(net, x, context):
    def step(cache, i):
        logits, cache = net.decode_step(cache, i, x[jnp.maximum(i - 1, 0)])
        return cache, logits

    _, rows = lax.scan(step, net.init_cache(context), jnp.arange(net.num_positions))
    return rows


@eqx.filter_jit
def _batched_decode_and_full(net, xs, contexts):
    decoded = jax.vmap(lambda x, c: _teacher_forced_rows(net, x, c))(xs, contexts)
    return decoded, jax.vmap(net)(xs, contexts)


def _negative_log_likelihood(net, xs, context):
    logits = jax.vmap(lambda x: net(x, context))(xs)
    log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), xs[..., None], axis=-1)
    return -log_probs.sum() / xs.shape[0]


@eqx.filter_jit
def _loss_and_directional_derivative(net, direction, xs, context):
    loss, grads = eqx.filter_value_and_grad(_negative_log_likelihood)(net, xs, context)
    flat_grads, _ = ravel_pytree(grads)
    return loss, flat_grads @ ravel_pytree(direction)[0], grads


@eqx.filter_jit
def _loss_along(net, direction, xs, context, step):
    return _negative_log_likelihood(jax.tree.map(lambda p, d: p + step * d, net, direction), xs, context)
