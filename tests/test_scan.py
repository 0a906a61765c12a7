"""An ``Autoregressive`` site inside ``numpyro.contrib.control_flow.scan``: SVI with a scan guide and the NumPyro
MCMC kernels (alone, as ``Gibbs`` blocks beside NUTS, in ``HMCGibbs``) reach the exact posterior, enumerated
over every joint value one time step at a time, without ``scan``.

Step ``t``'s prior reads ``x_{t-1}`` through its context, so the posterior couples the steps: the checks cover
what ``scan`` adds — a site stacked over time, its joint prior through time, ancestral sampling through it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from conftest import chi_square_pvalue
from numpyro.contrib.control_flow import scan
from numpyro.contrib.module import eqx_module
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, SVI, Gibbs, HMCGibbs, TraceGraph_ELBO
from scipy.special import logsumexp
from scipy.stats import halfnorm, norm

from arjax import Autoregressive
from arjax.mcmc.numpyro import ClozeKernel, IndependenceKernel, gibbs_fn
from arjax.nn import MADE
from arjax.svi import LeaveOneOutELBO, guide_net
from arjax.testing import all_sequences

T, N = 2, 3
PRIOR_NET = MADE(num_positions=N, num_categories=2, width=8, depth=1, context_size=N, key=jax.random.key(0))
LOADINGS = jnp.array([1.0, 2.0, -1.5])
Y = jnp.array([3.0, -1.0])
PAIR = 2  # sequences per step in the layout with a plate
P_MIN = 1e-3


def context(previous):
    """Step ``t``'s context from ``x_{t-1}`` (all zeros before the first step)."""
    return 2.0 * (2.0 * previous - 1.0)


def model(y, sigma=1.0):
    """One sequence per step: ``x_t ~ p(· | context(x_{t-1}))``, ``y_t ~ N(w·x_t, σ)``."""

    def step(previous, y_t):
        x = numpyro.sample("x", Autoregressive(PRIOR_NET, context(previous)))
        numpyro.sample("y", dist.Normal(LOADINGS @ x, sigma), obs=y_t)
        return x.astype(jnp.float32), None

    scan(step, jnp.zeros(N), y)


def paired_model(y):
    """A plate of two sequences per step sharing the context of the previous pair's mean; ``y_t`` sees their sum."""

    def step(previous, y_t):
        with numpyro.plate("pair", PAIR):
            x = numpyro.sample("x", Autoregressive(PRIOR_NET, context(previous.mean(0))))
        numpyro.sample("y", dist.Normal(LOADINGS @ x.sum(0), 1.0), obs=y_t)
        return x.astype(jnp.float32), None

    scan(step, jnp.zeros((PAIR, N)), y)


LAYOUTS = {"scan": (model, (T, N)), "scan over a plate": (paired_model, (T, PAIR, N))}


@functools.cache
def joint_values(layout) -> np.ndarray:
    """Every value of the site, ``[S, *shape]``, in the lexicographic order of ``x.ravel()``."""
    shape = LAYOUTS[layout][1]
    return np.asarray(all_sequences(int(np.prod(shape)), 2)).reshape((-1,) + shape)


def log_prob_by_steps(layout="scan", net_at=lambda t: PRIOR_NET) -> np.ndarray:
    """``Σ_t ln p_t(x_t | context(x_{t-1}))`` of every joint value, step by step without ``scan``."""
    xs = joint_values(layout)
    total, previous = 0.0, jnp.zeros(xs[:, 0].shape)
    for t in range(T):
        c = context(previous) if layout == "scan" else context(previous.mean(1))[:, None]
        log_p = Autoregressive(net_at(t), c).log_prob(xs[:, t])
        total = total + log_p.reshape(len(xs), -1).sum(-1)
        previous = jnp.asarray(xs[:, t], jnp.float32)
    return np.asarray(total, np.float64)


def log_likelihood(layout="scan", sigma=1.0) -> np.ndarray:
    """``Σ_t ln N(y_t | w·x_t, σ)`` of every joint value, one column per ``sigma`` of a grid."""
    xs = joint_values(layout)
    totals = xs if layout == "scan" else xs.sum(axis=2)
    means = (totals @ np.asarray(LOADINGS, np.float64))[..., None]
    return norm.logpdf(np.asarray(Y)[None, :, None], means, np.atleast_1d(sigma)[None, None, :]).sum(axis=1)


@functools.cache
def exact_posterior(layout="scan"):
    """``(ln p(x | y), ln p(y))`` over every joint value."""
    log_joint = log_prob_by_steps(layout) + log_likelihood(layout)[:, 0]
    log_evidence = logsumexp(log_joint)
    return log_joint - log_evidence, log_evidence


def test_the_posterior_couples_the_time_steps():
    log_post, _ = exact_posterior()
    post = np.exp(log_post).reshape(2**N, 2**N)  # [x_1, x_2]
    independent = np.outer(post.sum(axis=1), post.sum(axis=0))
    mutual_information = np.sum(post * (np.log(post) - np.log(independent)))
    log_prior = log_prob_by_steps()
    assert mutual_information > 0.3  # measured 0.43: no guide factorised over time is close
    assert np.sum(np.exp(log_prior) * (log_prior - log_post)) > 2.0  # measured KL(prior ‖ posterior) = 2.62


# SVI: the guide scans one net per step (the prior's arrays stacked over time, its starting point) over the carry.
STACKED_PRIOR = jax.tree.map(lambda a: jnp.stack([a] * T), PRIOR_NET)


def guide(y):
    nets = eqx_module("q", STACKED_PRIOR)  # registered outside the body: scan does not carry param sites

    def step(previous, net):
        x = numpyro.sample("x", Autoregressive(net, context(previous)))
        return x.astype(jnp.float32), None

    scan(step, jnp.zeros(N), nets)


# NumPyro's scan replays every guide site, the guide's pytree-valued param included, through jnp.shape.
@pytest.mark.filterwarnings("ignore:shape requires ndarray or scalar arguments:DeprecationWarning")
@pytest.mark.slow  # docs/sequences-over-time.md trains this model with LeaveOneOutELBO by default
@pytest.mark.parametrize("elbo, max_kl", [(LeaveOneOutELBO(32), 0.02), (TraceGraph_ELBO(32), 0.15)],
                         ids=["leave_one_out", "trace_graph"])  # fmt: skip
def test_svi_with_a_scan_guide_reaches_the_exact_posterior(elbo, max_kl):
    """From KL(prior ‖ posterior) = 2.62, 300 steps of 32 particles (measured KL: LOO 0.007, TraceGraph 0.08)."""
    learning_rate = optax.exponential_decay(0.05, 100, 0.3, transition_begin=150)
    result = SVI(model, guide, optax.adam(learning_rate), elbo).run(jax.random.key(1), 300, Y, progress_bar=False)
    trained = guide_net(result.params, STACKED_PRIOR, name="q")
    log_q = log_prob_by_steps(net_at=lambda t: jax.tree.map(lambda a: a[t], trained))
    log_post, log_evidence = exact_posterior()
    kl = float(np.sum(np.exp(log_q) * (log_q - log_post)))
    assert np.exp(log_q).sum() == pytest.approx(1.0, abs=1e-5)
    assert kl < max_kl
    assert float(np.mean(result.losses[-50:])) == pytest.approx(-log_evidence, abs=max_kl + 0.05)


NUM_CHAINS = 300
WARMUP = {"independence": 150, "independence with a fixed proposal": 150, "cloze-gibbs": 40, "cloze-mh": 40,
          "cloze-gibbs with an allowed rule": 40}
ALLOWED = np.array([[True, True], [True, False], [True, True]])  # x[t, 1] = 1 is disallowed


def kernel(kind, model):
    fixed_contexts = jnp.zeros((T, N))  # one Autoregressive with batch_shape (T,): a proposal that ignores the carry
    if kind == "independence with a fixed proposal":
        return IndependenceKernel(model, proposal=Autoregressive(PRIOR_NET, fixed_contexts))
    if kind == "cloze-gibbs with an allowed rule":  # the proposal's rule restricts the heat-bath candidates
        return ClozeKernel(model, mode="gibbs", proposal=Autoregressive(PRIOR_NET, fixed_contexts, allowed=ALLOWED))
    return IndependenceKernel(model) if kind == "independence" else ClozeKernel(model, mode=kind.split("-")[1])


@pytest.mark.parametrize("kind, layout", [
    ("independence", "scan"),
    ("cloze-mh", "scan over a plate"),
    pytest.param("cloze-mh", "scan", marks=pytest.mark.slow),
    pytest.param("cloze-gibbs", "scan", marks=pytest.mark.slow),
    pytest.param("independence", "scan over a plate", marks=pytest.mark.slow),
    pytest.param("independence with a fixed proposal", "scan", marks=pytest.mark.slow),
    pytest.param("cloze-gibbs with an allowed rule", "scan", marks=pytest.mark.slow),
])  # fmt: skip
def test_chains_on_a_scan_site_end_at_exact_posterior_draws(kind, layout):
    """Independence MH proposes from the site's joint prior through time; cloze sweeps every position of the
    stacked value. The final states of independent chains are tested against the enumerated posterior."""
    model, shape = LAYOUTS[layout]
    mcmc = MCMC(kernel(kind, model), num_warmup=WARMUP[kind], num_samples=1, num_chains=NUM_CHAINS,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(2), Y)
    x = np.asarray(mcmc.get_samples()["x"])
    assert x.shape == (NUM_CHAINS, *shape)
    log_post, _ = exact_posterior(layout)
    if kind == "cloze-gibbs with an allowed rule":  # π restricted to the allowed values
        log_post = np.where(joint_values(layout)[:, :, 1].any(axis=1), -np.inf, log_post)
        log_post = log_post - logsumexp(log_post)
        assert not x[:, :, 1].any()
    if kind == "independence" and layout == "scan":  # TV after n steps ≤ (1 - 1/max_x p(x|y)/p(x))^n
        assert (1 - np.exp(-np.max(log_post - log_prob_by_steps(layout)))) ** WARMUP[kind] < 1e-4
    flat = x.reshape(NUM_CHAINS, -1)
    assert chi_square_pvalue(flat, np.exp(log_post)) > P_MIN
    assert chi_square_pvalue(flat, np.exp(log_prob_by_steps(layout))) < 1e-4  # the prior is told apart


def noise_model(y):
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    model(y, sigma)


def exact_noise_posterior():
    """``p(x | y)`` over every joint value and ``E[σ | y]``, by enumeration of x and quadrature over σ."""
    sigmas = np.linspace(1e-3, 6.0, 3000)
    log_joint = log_prob_by_steps()[:, None] + halfnorm.logpdf(sigmas)[None, :] + log_likelihood("scan", sigmas)
    joint = np.exp(log_joint - logsumexp(log_joint))
    return joint.sum(axis=1), float(joint.sum(axis=0) @ sigmas)


@pytest.mark.slow
@pytest.mark.parametrize("composite", ["Gibbs with NUTS", "HMCGibbs"])
def test_a_scan_site_beside_a_continuous_latent_matches_the_exact_joint_posterior(composite):
    if composite == "HMCGibbs":
        update = gibbs_fn(noise_model, "x", model_args=(Y,), algorithm="cloze", mode="mh")
        sampler = HMCGibbs(NUTS(noise_model), gibbs_fn=update, gibbs_sites=["x"])
    else:
        sampler = Gibbs([(IndependenceKernel(noise_model), ["x"]), (NUTS(noise_model), None)])
    mcmc = MCMC(sampler, num_warmup=300, num_samples=3000, progress_bar=False)
    mcmc.run(jax.random.key(3), Y)
    samples = mcmc.get_samples()
    post_x, mean_sigma = exact_noise_posterior()

    sigma = np.asarray(samples["sigma"])
    assert abs(sigma.mean() - mean_sigma) < 5 * sigma.std() / np.sqrt(effective_sample_size(sigma[None]))
    x = np.asarray(samples["x"]).reshape(len(sigma), T * N)
    exact = post_x @ joint_values("scan").reshape(-1, T * N)  # P(x[t, i] = 1 | y)
    stderr = x.std(axis=0) / np.sqrt(effective_sample_size(x[None].astype(float)))
    np.testing.assert_array_less(np.abs(x.mean(axis=0) - exact), 5 * stderr + 0.01)


def test_scan_sites_check_positions_initial_values_and_proposals_against_the_stacked_value():
    def run(kernel, **kwargs):
        MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False).run(jax.random.key(0), Y, **kwargs)

    with pytest.raises(ValueError, match=r"positions must lie in 0..5, got \[6\]"):  # T·N = 6 flat positions
        run(ClozeKernel(model, positions=[0, 6]))
    with pytest.raises(ValueError, match=r"init_params\['x'\] must have shape \(2, 3\)"):
        run(IndependenceKernel(model), init_params={"x": jnp.zeros(3, jnp.int32)})
    with pytest.raises(ValueError, match=r"init_params\['x'\] holds tokens outside 0..1"):
        run(ClozeKernel(model), init_params={"x": jnp.full((T, N), 2, jnp.int32)})
    with pytest.raises(ValueError, match=r"proposal must have batch_shape \+ event_shape \(2, 3\) and num_categories"
                                         r" 2 like site 'x', got \(3,\) and 2"):  # fmt: skip
        run(IndependenceKernel(model, proposal=Autoregressive(PRIOR_NET, jnp.zeros(N))))
