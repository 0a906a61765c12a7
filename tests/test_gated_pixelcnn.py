"""GatedPixelCNN: causal, blind-spot-free (unlike a plain PixelCNN of the same size), exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import chi_square_pvalue

from arjax import Autoregressive
from arjax.nn import GatedPixelCNN, PixelCNN
from arjax.testing import all_sequences, check_autoregressive


@pytest.mark.parametrize("L, depth, half_kernel", [(4, 3, 1), (5, 2, 2)])
def test_every_earlier_site_is_seen_and_no_later_one(L, depth, half_kernel):
    net = GatedPixelCNN(L, depth=depth, width=8, half_kernel=half_kernel, key=jax.random.key(L))
    seen = np.asarray(check_autoregressive(net, jax.random.key(1), num_inputs=2))
    np.testing.assert_array_equal(seen, np.tril(np.ones((L * L, L * L), bool), -1))


def test_a_plain_pixelcnn_of_the_same_size_has_a_blind_spot():
    net = PixelCNN(4, depth=3, width=8, half_kernel=1, key=jax.random.key(0))
    seen = np.asarray(check_autoregressive(net, jax.random.key(1), num_inputs=2))
    site = 4  # (1, 0) never reads (0, 2) or (0, 3): the row above, more than h columns to the right
    assert not seen[site, 2] and not seen[site, 3]
    assert not np.array_equal(seen, np.tril(np.ones((16, 16), bool), -1))


def test_distribution_is_normalised_and_sampled_exactly_on_3x3():
    net = GatedPixelCNN(3, num_categories=2, depth=2, width=8, key=jax.random.key(2))
    p = Autoregressive(net)
    log_p = p.log_prob(all_sequences(9, 2))
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p))), 1.0, atol=1e-5)
    samples = p.sample(jax.random.key(3), (20_000,))
    assert chi_square_pvalue(samples, np.exp(np.asarray(log_p, np.float64))) > 1e-3


def test_bad_configuration_and_input_are_rejected():
    with pytest.raises(ValueError, match="half_kernel"):
        GatedPixelCNN(4, half_kernel=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="L must be"):
        GatedPixelCNN(1, key=jax.random.key(0))
    net = GatedPixelCNN(3, depth=1, width=4, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"x must have shape \(9,\)"):
        net(jnp.zeros(8, jnp.int32))
