"""``value_and_grad_by_microbatch`` and ``fit_mle(microbatch_size=...)``: the whole batch's step up to rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arjax.nn import MADE, Transformer
from arjax.objectives import nll
from arjax.train import fit_mle, value_and_grad_by_microbatch


def _close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(y))))


@pytest.mark.parametrize("microbatch_size", [1, 3, 4])
def test_microbatches_give_the_whole_batch_value_and_gradient(microbatch_size):
    net = Transformer(num_positions=6, num_categories=3, d_model=16, num_heads=2, context_size=2,
                      key=jax.random.key(0))  # fmt: skip
    x = jax.random.randint(jax.random.key(1), (12, 6), 0, 3)
    context = jax.random.normal(jax.random.key(2), (12, 2))

    def loss(net, batch):
        return nll(net, batch[0], context=batch[1])

    whole = jax.value_and_grad(loss)(net, (x, context))
    micro = jax.jit(lambda net, batch: value_and_grad_by_microbatch(loss, net, batch, microbatch_size=microbatch_size))
    _close(micro(net, (x, context)), whole, rtol=1e-5)


def test_none_leaves_and_none_size_pass_through():
    net = MADE(num_positions=4, num_categories=2, width=8, key=jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (8, 4), 0, 2)

    def loss(net, batch):
        assert batch[1] is None
        return nll(net, batch[0])

    whole = jax.value_and_grad(loss)(net, (x, None))
    _close(value_and_grad_by_microbatch(loss, net, (x, None), microbatch_size=None), whole, rtol=0)
    _close(value_and_grad_by_microbatch(loss, net, (x, None), microbatch_size=2), whole, rtol=1e-5)


@pytest.mark.parametrize(
    "microbatch_size, match",
    [(0, "microbatch_size must be an integer ≥ 1"), (True, "microbatch_size must be an integer"),
     (2.0, "microbatch_size must be an integer"), (3, "microbatch_size=3 must divide the batch size 8")],
)  # fmt: skip
def test_bad_microbatch_sizes_are_rejected(microbatch_size, match):
    with pytest.raises(ValueError, match=match):
        value_and_grad_by_microbatch(lambda w, x: jnp.mean(w * x), 1.0, jnp.ones(8), microbatch_size=microbatch_size)
    net = MADE(num_positions=4, num_categories=2, width=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        fit_mle(net, np.zeros((16, 4), np.int32), optimizer=optax.adam(1e-2), batch_size=8, num_steps=1,
                microbatch_size=microbatch_size, key=jax.random.key(0), progress=False)  # fmt: skip


def test_leaves_with_different_row_counts_are_rejected():
    with pytest.raises(ValueError, match="same number of rows, got \\[4, 8\\]"):
        value_and_grad_by_microbatch(lambda w, b: jnp.mean(b[0]) * w, 1.0, (jnp.ones(8), jnp.ones(4)),
                                     microbatch_size=2)  # fmt: skip


def test_fit_mle_with_microbatches_follows_the_whole_batch_run_and_repeats_exactly():
    # SGD: the update is linear in the gradient, so a wrongly scaled sum of microbatches would show.
    net = Transformer(num_positions=5, num_categories=2, d_model=16, num_heads=2, key=jax.random.key(0))
    data = jax.random.bernoulli(jax.random.key(1), 0.3, (64, 5)).astype(jnp.int32)

    def fit(**kw):
        return fit_mle(net, data, optimizer=optax.sgd(0.05), batch_size=16, num_steps=20, key=jax.random.key(2),
                       log_every=10, progress=False, **kw)  # fmt: skip

    whole, whole_history = fit()
    micro, micro_history = fit(microbatch_size=4)
    again, _ = fit(microbatch_size=4)
    np.testing.assert_allclose(micro_history["nll"], whole_history["nll"], rtol=1e-5)
    assert whole_history["nll"][-1] < whole_history["nll"][0] - 0.03
    _close(micro, whole, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(micro), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
