"""Bad input is rejected before any work, with a message naming the argument and what was expected."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arjax import Autoregressive, sample_and_log_prob
from arjax.nn import MADE


@pytest.fixture(scope="module")
def net():
    return MADE(num_positions=4, num_categories=3, width=8, depth=1, key=jax.random.key(0))


def test_value_of_wrong_length(net):
    with pytest.raises(ValueError, match=r"value must have shape \(\.\.\., 4\)"):
        Autoregressive(net).log_prob(jnp.zeros((2, 5), jnp.int32))


def test_non_numeric_value(net):
    with pytest.raises(TypeError, match="value must hold real numbers or integer tokens"):
        Autoregressive(net).log_prob(jnp.zeros((2, 4), jnp.complex64))


def test_value_batch_that_does_not_broadcast():
    net = MADE(num_positions=4, num_categories=3, width=8, depth=1, context_size=1, key=jax.random.key(0))
    dist = Autoregressive(net, jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match="do not broadcast with batch_shape"):
        dist.log_prob(jnp.zeros((2, 4), jnp.int32))


def test_out_of_range_tokens_give_minus_infinity_without_validation(net):
    x = jnp.array([[0, 1, 2, 0], [0, 3, 1, 1], [-1, 0, 0, 0]])
    log_p = Autoregressive(net, validate_args=False).log_prob(x)
    assert np.isfinite(log_p[0]) and np.isneginf(log_p[1]) and np.isneginf(log_p[2])


def test_allowed_of_wrong_shape(net):
    with pytest.raises(ValueError, match=r"allowed must have shape .*\(4, 3\).*got shape \(4, 2\)"):
        Autoregressive(net, allowed=jnp.ones((4, 2), bool))


def test_allowed_of_wrong_dtype(net):
    with pytest.raises(TypeError, match="allowed must be a boolean array"):
        Autoregressive(net, allowed=jnp.ones((4, 3)))


def test_allowed_row_with_no_token(net):
    with pytest.raises(ValueError, match=r"rows \[2\] allow none"):
        Autoregressive(net, allowed=jnp.ones((4, 3), bool).at[2].set(False))


def test_allowed_rule_with_empty_row_raises_inside_jit(net):
    def rule(x, i):
        return jnp.where(i == 2, jnp.zeros(3, bool), jnp.ones(3, bool))

    with pytest.raises(eqx.EquinoxRuntimeError, match="no allowed token"):
        Autoregressive(net, allowed=rule).sample(jax.random.key(0), (2,))


@pytest.mark.parametrize("shape", [5, (2.0,), "abc", (3, -1), (True,)])
def test_sample_shape_must_be_a_tuple_of_ints(net, shape):
    with pytest.raises(TypeError, match="sample_shape must be a tuple of non-negative ints"):
        Autoregressive(net).sample(jax.random.key(0), shape)


def test_net_without_the_protocol():
    with pytest.raises(TypeError, match="num_positions"):
        Autoregressive(lambda x: x)


def test_context_of_wrong_shape():
    net = MADE(num_positions=4, num_categories=3, width=8, depth=1, context_size=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"context must have shape batch_shape \+ \(2,\)"):
        Autoregressive(net, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="required"):
        Autoregressive(net)


def test_context_for_a_net_without_context(net):
    with pytest.raises(ValueError, match="takes none"):
        sample_and_log_prob(net, jax.random.key(0), (2,), context=jnp.zeros(2))


class _WithoutFastPath(eqx.Module):
    inner: MADE
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(self, inner):
        self.inner, self.num_positions, self.num_categories = inner, inner.num_positions, inner.num_categories

    def __call__(self, x, context=None):
        return self.inner(x, context)


def test_cached_path_requested_for_a_net_without_one(net):
    with pytest.raises(ValueError, match="_WithoutFastPath has no init_cache/decode_step"):
        sample_and_log_prob(_WithoutFastPath(net), jax.random.key(0), (2,), cached=True)
    x, _ = sample_and_log_prob(_WithoutFastPath(net), jax.random.key(0), (2,))
    np.testing.assert_array_equal(x, sample_and_log_prob(net, jax.random.key(0), (2,))[0])
