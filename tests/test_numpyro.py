"""``Autoregressive`` inside NumPyro models: the traps listed in shared notes, each tested."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.contrib.module import eqx_module
from numpyro.infer import MCMC, NUTS, SVI, Predictive, TraceGraph_ELBO
from numpyro.infer.util import log_density

from arjax import Autoregressive
from arjax.nn import MADE, MeanField
from arjax.testing import all_sequences


@pytest.fixture(scope="module")
def prior_net():
    return MADE(num_positions=3, num_categories=2, width=8, depth=1, key=jax.random.key(0))


def _model(prior_net, y=2.0):
    x = numpyro.sample("x", Autoregressive(prior_net))
    numpyro.sample("y", dist.Normal(x.sum(-1).astype(jnp.float32), 1.0), obs=y)


def test_is_not_reparameterised(prior_net):
    d = Autoregressive(prior_net)
    assert d.has_rsample is False
    assert d.support.is_discrete and d.support.event_dim == 1
    assert d.expand((3,)).has_rsample is False


def test_sample_site_carries_log_prob_as_intermediates(prior_net):
    trace = handlers.trace(handlers.seed(_model, 0)).get_trace(prior_net)
    site = trace["x"]
    (carried,) = site["intermediates"]
    np.testing.assert_allclose(carried, Autoregressive(prior_net).log_prob(site["value"]), atol=1e-6)
    assert site["fn"].log_prob(site["value"], site["intermediates"]) is carried


def test_log_density_of_a_model_matches_the_hand_computed_joint(prior_net):
    x = jnp.array([1, 0, 1])
    joint = jax.jit(lambda v: log_density(_model, (prior_net,), {}, {"x": v})[0])(x)
    expected = Autoregressive(prior_net).log_prob(x) + dist.Normal(2.0, 1.0).log_prob(2.0)
    np.testing.assert_allclose(joint, expected, atol=1e-6)


def test_plate_expand_mask_and_predictive(prior_net):
    def model():
        with numpyro.plate("data", 4):
            return numpyro.sample("x", Autoregressive(prior_net))

    trace = handlers.trace(handlers.seed(model, 1)).get_trace()
    assert trace["x"]["value"].shape == (4, 3)
    assert trace["x"]["fn"].batch_shape == (4,)
    assert trace["x"]["fn"].log_prob(trace["x"]["value"]).shape == (4,)

    expanded = Autoregressive(prior_net).expand((2, 5))
    x, (lp,) = expanded.sample_with_intermediates(jax.random.key(0), (3,))
    assert x.shape == (3, 2, 5, 3) and lp.shape == (3, 2, 5)
    np.testing.assert_allclose(expanded.log_prob(x), lp, atol=1e-5)
    assert float(Autoregressive(prior_net).mask(False).log_prob(x[0, 0, 0])) == 0.0
    assert Autoregressive(prior_net).expand((2,)).to_event(1).event_shape == (2, 3)

    draws = Predictive(_model, num_samples=7)(jax.random.key(2), prior_net, y=None)
    assert draws["x"].shape == (7, 3) and draws["x"].dtype == jnp.int32


def test_enumeration_is_not_advertised_but_exact_support_is_available(prior_net):
    d = Autoregressive(prior_net)
    assert d.has_enumerate_support is False
    support = d.enumerate_support()
    np.testing.assert_array_equal(support, all_sequences(3, 2))
    np.testing.assert_allclose(jnp.exp(d.log_prob(support)).sum(), 1.0, atol=1e-6)


def test_nuts_on_an_autoregressive_latent_fails_loudly(prior_net):
    with pytest.raises(RuntimeError, match="enumerate support"):
        MCMC(NUTS(_model), num_warmup=2, num_samples=2, progress_bar=False).run(jax.random.key(0), prior_net)


def test_tracegraph_elbo_gradient_matches_the_exact_gradient(prior_net):
    guide_net = MeanField(num_positions=3, num_categories=2, init_scale=1.0, key=jax.random.key(5))
    params_net, static = eqx.partition(guide_net, eqx.is_inexact_array)

    def guide(prior_net, y=2.0):
        q_net = eqx_module("q", guide_net)
        numpyro.sample("x", Autoregressive(q_net))

    svi = SVI(_model, guide, optax.sgd(0.0), TraceGraph_ELBO(num_particles=40_000))
    params = svi.get_params(svi.init(jax.random.key(0), prior_net))
    estimated = jax.grad(lambda p: svi.loss.loss(jax.random.key(1), p, _model, guide, prior_net))(params)

    xs = all_sequences(3, 2)

    def exact_loss(p):
        q = Autoregressive(eqx.combine(p, static))
        log_q = q.log_prob(xs)
        log_joint = Autoregressive(prior_net).log_prob(xs) + dist.Normal(xs.sum(-1).astype(jnp.float32), 1.0).log_prob(
            2.0
        )
        return jnp.sum(jnp.exp(log_q) * (log_q - log_joint))

    exact = jax.grad(exact_loss)(params_net)
    np.testing.assert_allclose(estimated["q$params"].logits, exact.logits, atol=0.03)
    assert np.abs(exact.logits).max() > 0.1
