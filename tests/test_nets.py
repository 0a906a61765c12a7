"""The network protocol for MADE and MeanField: shapes, autoregressive property, errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arjax.nn import MADE, MeanField
from arjax.testing import check_autoregressive


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("residual", [False, True])
def test_made_rows_depend_only_on_earlier_positions(depth, residual):
    net = MADE(num_positions=7, num_categories=3, width=20, depth=depth, residual=residual, key=jax.random.key(depth))
    seen = np.asarray(check_autoregressive(net, jax.random.key(1)))
    assert not np.triu(seen).any()
    if depth >= 1:
        assert seen[6, :6].all(), "the last row should see every earlier position"
    assert not seen[0].any()


@pytest.mark.parametrize(
    "n, k, width, depth, residual, context_size, order",
    [
        (2, 2, 3, 1, False, None, "sorted"),
        (17, 2, 40, 2, False, None, "sorted"),  # N past one decode block, not a multiple of it
        (17, 2, 40, 2, False, None, "cyclic"),
        (33, 3, 100, 3, True, None, "sorted"),  # several units per degree, residual layers
        (33, 3, 100, 3, True, None, "cyclic"),
        (40, 4, 20, 2, False, 2, "sorted"),  # fewer units than degrees, context
        (16, 5, 64, 1, False, None, "sorted"),  # exactly one block
        (20, 2, 256, 2, False, None, "sorted"),  # wide enough for the block-triangular forward pass
    ],
)
def test_made_decode_step_reproduces_every_row_of_the_full_pass(n, k, width, depth, residual, context_size, order):
    net = MADE(n, k, width=width, depth=depth, residual=residual, context_size=context_size,
               activation=jax.nn.sigmoid, hidden_order=order, key=jax.random.key(n))  # fmt: skip
    context = None if context_size is None else jnp.array([0.3, -1.2])
    x = jax.random.randint(jax.random.key(1), (n,), 0, k)

    def step(cache, i):
        logits, cache = net.decode_step(cache, i, x[jnp.maximum(i - 1, 0)])
        return cache, logits

    _, rows = jax.lax.scan(step, net.init_cache(context), jnp.arange(n))
    np.testing.assert_allclose(rows, net(x, context), atol=2e-5)


@pytest.mark.parametrize(
    "n, width, depth, context_size",
    [(7, 20, 2, None), (30, 256, 3, 2), pytest.param(300, 512, 2, None, marks=pytest.mark.slow)],
)
def test_sorted_and_cyclic_hidden_orders_are_the_same_function_for_the_same_key(n, width, depth, context_size):
    kwargs = dict(width=width, depth=depth, context_size=context_size, residual=depth > 2, key=jax.random.key(3))
    blocked, dense = MADE(n, 3, **kwargs), MADE(n, 3, hidden_order="cyclic", **kwargs)
    assert blocked.hidden_order == "sorted" and not np.array_equal(blocked.weights[1], dense.weights[1])
    context = None if context_size is None else jnp.array([1.0, -0.5])
    x = jax.random.randint(jax.random.key(4), (n,), 0, 3)
    np.testing.assert_allclose(blocked(x, context), dense(x, context), atol=2e-5)
    grads = [jax.grad(lambda m: jax.nn.log_softmax(m(x, context)).sum())(m) for m in (blocked, dense)]
    np.testing.assert_allclose(grads[0].biases[-1], grads[1].biases[-1], atol=2e-5)


def test_made_with_context_is_autoregressive_and_uses_context():
    net = MADE(num_positions=5, num_categories=2, width=16, depth=2, context_size=3, key=jax.random.key(0))
    c = jnp.array([0.5, -1.0, 2.0])
    check_autoregressive(net, jax.random.key(1), context=c)
    x = jnp.array([0, 1, 1, 0, 1])
    assert not jnp.allclose(net(x, c)[0], net(x, -c)[0])


def test_mean_field_rows_depend_on_nothing():
    net = MeanField(num_positions=6, num_categories=4, key=jax.random.key(0))
    assert not np.asarray(check_autoregressive(net, jax.random.key(1))).any()


def test_check_autoregressive_detects_a_leak():
    class Leaky(eqx.Module):
        num_positions: int = 4
        num_categories: int = 2

        def __call__(self, x, context=None):
            rows = jax.nn.one_hot(x, 2) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer) else x
            return jnp.cumsum(rows, axis=0) * 0 + rows[2].sum() * rows[3]

    with pytest.raises(AssertionError, match="not autoregressive"):
        check_autoregressive(Leaky(), jax.random.key(0), jacobian=False)
    with pytest.raises(AssertionError, match="x_3"):
        check_autoregressive(Leaky(), jax.random.key(0))


def test_int_and_one_hot_inputs_agree():
    net = MADE(num_positions=6, num_categories=3, depth=2, key=jax.random.key(0))
    x = jnp.array([2, 0, 1, 1, 0, 2])
    np.testing.assert_allclose(net(x), net(jax.nn.one_hot(x, 3)), atol=1e-6)


def test_masked_weights_get_zero_gradient():
    net = MADE(num_positions=5, num_categories=2, width=8, depth=1, key=jax.random.key(0))
    grads = jax.grad(lambda n: n(jnp.array([1, 0, 1, 1, 0])).sum())(net)
    for g, mask in zip(grads.weights, net._masks()):
        assert np.all(np.asarray(g)[mask == 0] == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_positions=0, num_categories=2), "num_positions"),
        (dict(num_positions=3, num_categories=0), "num_categories"),
        (dict(num_positions=3, num_categories=2, width=0), "width"),
        (dict(num_positions=3, num_categories=2, depth=-1), "depth"),
        (dict(num_positions=3, num_categories=2, context_size=0), "context_size"),
        (dict(num_positions=3, num_categories=2, hidden_order="random"), "hidden_order"),
    ],
)
def test_made_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MADE(**kwargs, key=jax.random.key(0))


def test_nets_reject_bad_inputs():
    net = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"x must have shape \(4,\)"):
        net(jnp.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        net(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="without context_size"):
        net(jnp.array([0, 1, 0, 1]), jnp.zeros(2))
    conditional = MADE(num_positions=4, num_categories=2, context_size=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"context must have shape \(2,\)"):
        conditional(jnp.array([0, 1, 0, 1]), jnp.zeros(3))
    with pytest.raises(ValueError, match="required"):
        conditional(jnp.array([0, 1, 0, 1]))


def test_made_works_in_float64():
    with jax.enable_x64(True):
        net = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
        assert net(jnp.array([0, 1, 0, 1])).dtype == jnp.float64
