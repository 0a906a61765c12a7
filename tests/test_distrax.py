"""The Distrax view gives the same numbers as the NumPyro distribution."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arjax import Autoregressive, AutoregressiveDistrax
from arjax.nn import MADE


@pytest.fixture(scope="module")
def pair():
    net = MADE(num_positions=5, num_categories=3, width=16, depth=2, context_size=2, key=jax.random.key(0))
    numpyro_dist = Autoregressive(
        net, jnp.array([[0.0, 1.0], [1.0, -1.0]]), allowed=jnp.ones((5, 3), bool).at[1, 2].set(False)
    )
    return numpyro_dist, numpyro_dist.to_distrax()


def test_is_a_distrax_distribution_with_the_same_shapes(pair):
    p, q = pair
    assert isinstance(q, distrax.Distribution) and isinstance(q, AutoregressiveDistrax)
    assert q.event_shape == p.event_shape == (5,) and q.batch_shape == p.batch_shape == (2,)


@pytest.mark.parametrize("sample_shape", [(), (4,), (2, 3)])
def test_same_key_gives_identical_samples_and_log_probs(pair, sample_shape):
    p, q = pair
    key = jax.random.key(11)
    x_q, lp_q = q.sample_and_log_prob(seed=key, sample_shape=sample_shape)
    x_p, lp_p = p.sample_and_log_prob(key, sample_shape)
    np.testing.assert_array_equal(x_q, x_p)
    np.testing.assert_array_equal(lp_q, lp_p)
    np.testing.assert_array_equal(q.sample(seed=key, sample_shape=sample_shape), x_p)
    np.testing.assert_array_equal(q.log_prob(x_p), p.log_prob(x_p))
    assert not (x_p[..., 1] == 2).any()


def test_distrax_view_jits(pair):
    _, q = pair
    x = jax.jit(lambda d, k: d.sample(seed=k, sample_shape=(3,)))(q, jax.random.key(0))
    np.testing.assert_array_equal(x, q.sample(seed=jax.random.key(0), sample_shape=(3,)))
