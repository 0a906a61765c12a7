"""NumPyro's conventions, checked as its own generic distribution tests check them, each beside a NumPyro control:
out-of-support values warn and give -inf (never raise), arguments are validated, ``vmap_over`` works, and an
``Autoregressive`` site inside ``numpyro.contrib.control_flow.scan`` gets its batch shape promoted."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan
from numpyro.distributions.batch_util import vmap_over
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from arjax import Autoregressive
from arjax.nn import MADE

K, N, C = 3, 4, 2
NET = MADE(num_positions=N, num_categories=K, width=8, depth=1, key=jax.random.key(0))
CONTEXT_NET = MADE(num_positions=N, num_categories=K, width=8, depth=1, context_size=C, key=jax.random.key(1))
CONTEXT = jnp.array([0.5, -1.0])
OUTSIDE = jnp.array([[0, 1, 2, 0], [0, 3, 1, 1], [-1, 0, 0, 0]])


def _make(conditioned: bool, **kwargs):
    return Autoregressive(CONTEXT_NET, CONTEXT, **kwargs) if conditioned else Autoregressive(NET, **kwargs)


def _control(**kwargs):
    return dist.Categorical(logits=jnp.zeros((N, K)), **kwargs).to_event(1)


@pytest.mark.parametrize("conditioned", [False, True], ids=["plain", "context"])
def test_out_of_support_tokens_warn_and_give_minus_infinity_like_categorical(conditioned):
    for d in (_make(conditioned, validate_args=True), _control(validate_args=True)):
        with pytest.warns(UserWarning, match="Out-of-support values provided to log prob method"):
            log_p = d.log_prob(OUTSIDE)
        assert np.isfinite(log_p[0]) and np.all(np.isneginf(log_p[1:]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # under jit: no warning (the mask is traced), still -inf
            jitted = jax.jit(lambda v, d=d: d.log_prob(v))(OUTSIDE)
        assert np.isfinite(jitted[0]) and np.all(np.isneginf(jitted[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = _make(conditioned, validate_args=False).log_prob(OUTSIDE)
    assert np.isfinite(quiet[0]) and np.all(np.isneginf(quiet[1:]))


def test_non_integer_tokens_are_out_of_support():
    value = jnp.array([0.0, 1.5, 2.0, 0.0])
    assert not _control().support(value)  # NumPyro's integer support; its Categorical refuses float values outright
    with pytest.warns(UserWarning, match="Out-of-support"):
        assert np.isneginf(_make(False, validate_args=True).log_prob(value))
    np.testing.assert_allclose(_make(False).log_prob(jnp.array([0.0, 1.0, 2.0, 0.0])),
                               _make(False).log_prob(jnp.array([0, 1, 2, 0])))  # fmt: skip


def test_validation_is_on_by_default_as_in_numpyro():
    with pytest.warns(UserWarning, match="Out-of-support"):
        _make(False).log_prob(OUTSIDE)


def test_nan_context_fails_argument_validation_like_a_nan_parameter():
    with pytest.raises(ValueError, match="Normal distribution got invalid loc parameter"):
        dist.Normal(jnp.nan, 1.0, validate_args=True)
    with pytest.raises(ValueError, match="Autoregressive distribution got invalid context parameter"):
        Autoregressive(CONTEXT_NET, jnp.array([0.0, jnp.nan]), validate_args=True)
    Autoregressive(CONTEXT_NET, jnp.array([0.0, jnp.nan]), validate_args=False)


def test_vmap_over_a_distribution_built_inside_vmap():
    def make(context):
        return Autoregressive(CONTEXT_NET, context)

    d = make(CONTEXT)
    for in_axes, out_axes in [(0, 0), (0, vmap_over(d, context=0))]:
        batched = jax.vmap(make, in_axes=in_axes, out_axes=out_axes)(CONTEXT[None])
        samples = jax.vmap(lambda b: b.sample(jax.random.key(0)), in_axes=(out_axes,))(batched)
        assert samples.shape == (1, N)
        np.testing.assert_array_equal(samples[0], d.sample(jax.random.key(0)))
    nets = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), NET)
    axes = vmap_over(Autoregressive(NET), net=0)
    batched = jax.vmap(Autoregressive, in_axes=(0,), out_axes=axes)(nets)
    log_p = jax.vmap(lambda b: b.log_prob(OUTSIDE[0]), in_axes=(axes,))(batched)
    second = Autoregressive(jax.tree.map(lambda a: 2 * a, NET)).log_prob(OUTSIDE[0])
    np.testing.assert_allclose(log_p, [Autoregressive(NET).log_prob(OUTSIDE[0]), second], rtol=1e-6)


T = 5
CONTEXTS = jax.random.normal(jax.random.key(2), (T, C))


def _scan_model(layout):
    def model(contexts):
        def step(carry, c):
            if layout == "no plate":
                x = numpyro.sample("x", Autoregressive(CONTEXT_NET, c))
            elif layout == "plate":
                with numpyro.plate("sequences", 3):
                    x = numpyro.sample("x", Autoregressive(CONTEXT_NET, c))
            else:  # the batch comes from the context itself
                with numpyro.plate("sequences", 3):
                    x = numpyro.sample("x", Autoregressive(CONTEXT_NET, jnp.stack([c, -c, 2 * c])))
            return carry, x

        scan(step, None, contexts)

    return model


def _hand_log_density(layout, x):
    total = 0.0
    for t in range(T):
        c = CONTEXTS[t]
        contexts = c if layout != "batched context" else jnp.stack([c, -c, 2 * c])
        total += jnp.sum(Autoregressive(CONTEXT_NET, contexts).log_prob(x[t]))
    return total


@pytest.mark.parametrize("layout", ["no plate", "plate", "batched context"])
def test_scan_site_log_density_is_the_sum_over_time(layout):
    model = _scan_model(layout)
    shape = (T, N) if layout == "no plate" else (T, 3, N)
    x = jax.random.randint(jax.random.key(3), shape, 0, K)
    value, trace = log_density(model, (CONTEXTS,), {}, {"x": x})
    assert trace["x"]["fn"].batch_shape == shape[:-1]
    np.testing.assert_allclose(value, _hand_log_density(layout, x), rtol=1e-5)
    draws = Predictive(model, num_samples=2)(jax.random.key(4), CONTEXTS)["x"]
    assert draws.shape == (2, *shape) and draws.dtype == jnp.int32
