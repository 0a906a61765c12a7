"""NumPyro kernels for an ``Autoregressive`` site, checked against exact enumeration (and quadrature over σ)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from conftest import TableNet, chi_square_pvalue
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, Gibbs, HMCGibbs
from scipy.special import logsumexp
from scipy.stats import halfnorm, norm

from arjax import Autoregressive
from arjax.mcmc.numpyro import ClozeKernel, IndependenceKernel, gibbs_fn
from arjax.testing import all_sequences

N, K = 5, 3
NUM_CHAINS = 1000
P_MIN = 1e-3


@functools.cache
def prior_table():
    log_p = 1.5 * np.random.default_rng(0).standard_normal(K**N)
    return log_p - logsumexp(log_p)


PRIOR = Autoregressive(TableNet(prior_table(), N, K))
XS = np.asarray(all_sequences(N, K))


def known_noise_model(W, y):
    x = numpyro.sample("x", PRIOR)
    numpyro.deterministic("total", x.sum())
    numpyro.sample("y", dist.Normal(W @ x.astype(W.dtype), 1.0).to_event(1), obs=y)


def unknown_noise_model(W, y):
    x = numpyro.sample("x", PRIOR)
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(W @ x.astype(W.dtype), sigma).to_event(1), obs=y)


def synthetic_data(num_observations, sigma, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((num_observations, N)).astype(np.float32)
    x_true = rng.integers(0, K, N)
    return W, (W @ x_true + sigma * rng.standard_normal(num_observations)).astype(np.float32), x_true


def exact_known_noise_posterior(W, y):
    log_post = prior_table() + norm.logpdf(y[None, :], XS @ W.T.astype(np.float64), 1.0).sum(axis=1)
    return np.exp(log_post - logsumexp(log_post))


def exact_unknown_noise_posterior(W, y):
    """``p(x | y)`` over all sequences and ``E[σ | y]``, by enumeration of x and quadrature over σ."""
    sigmas = np.linspace(1e-3, 4.0, 4000)
    means = XS @ W.T.astype(np.float64)
    log_lik = norm.logpdf(y[None, None, :], means[:, None, :], sigmas[None, :, None]).sum(axis=-1)
    log_joint = prior_table()[:, None] + halfnorm.logpdf(sigmas)[None, :] + log_lik
    joint = np.exp(log_joint - logsumexp(log_joint))
    return joint.sum(axis=1), float(joint.sum(axis=0) @ sigmas), sigmas, joint.sum(axis=0)


KNOWN = synthetic_data(2, 1.0, 1)[:2]


@functools.cache
def vectorized_run(kind):
    kernel = {
        "independence": lambda: IndependenceKernel(known_noise_model),
        "cloze-gibbs": lambda: ClozeKernel(known_noise_model, site="x", mode="gibbs"),
    }[kind]()
    mcmc = MCMC(
        kernel, num_warmup=80, num_samples=4, num_chains=NUM_CHAINS, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.key(0), *KNOWN)
    return mcmc


@pytest.mark.parametrize("kind", ["independence", "cloze-gibbs"])
def test_vectorized_chains_end_at_exact_posterior_draws(kind):
    mcmc = vectorized_run(kind)
    exact = exact_known_noise_posterior(*KNOWN)
    if kind == "independence":
        max_weight = np.max(exact / np.exp(prior_table()))
        assert (1 - 1 / max_weight) ** 80 < 1e-4
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["x"].shape == (NUM_CHAINS, 4, N)
    final = np.asarray(samples["x"][:, -1])
    assert chi_square_pvalue(final, exact) > P_MIN
    assert chi_square_pvalue(final, np.exp(prior_table())) < 1e-4
    np.testing.assert_array_equal(samples["total"], samples["x"].sum(-1))


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # r_hat of fixed positions
def test_single_chain_with_a_fixed_context_reports_progress_and_prints_a_summary(capsys):
    start = jnp.array([2, 0, 1, 1, 0])
    kernel = ClozeKernel(known_noise_model, positions=[1, 3], mode="mh")
    mcmc = MCMC(kernel, num_warmup=5, num_samples=100)
    mcmc.run(jax.random.key(4), *KNOWN, init_params={"x": start})
    mcmc.print_summary()
    out = capsys.readouterr()
    progress = kernel.get_diagnostics_str(mcmc.last_state)  # what the progress bar shows
    assert "acc. prob=" in progress and "changed=" in progress
    assert "x[4]" in out.out and "r_hat" in out.out
    x = np.asarray(mcmc.get_samples()["x"])
    np.testing.assert_array_equal(x[:, [0, 2, 4]], np.broadcast_to(np.asarray(start)[[0, 2, 4]], (100, 3)))
    assert len(np.unique(x[:, [1, 3]], axis=0)) > 1


@pytest.mark.slow
def test_gibbs_block_with_nuts_matches_the_exact_joint_posterior():
    data = synthetic_data(3, 0.7, 2)[:2]
    gibbs = Gibbs([(IndependenceKernel(unknown_noise_model), ["x"]), (NUTS(unknown_noise_model), None)])
    mcmc = MCMC(gibbs, num_warmup=200, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(2), *data)
    samples = mcmc.get_samples()
    post_x, mean_sigma, _, _ = exact_unknown_noise_posterior(*data)

    sigma = np.asarray(samples["sigma"])
    sigma_stderr = sigma.std() / np.sqrt(effective_sample_size(sigma[None]))
    assert abs(sigma.mean() - mean_sigma) < 5 * sigma_stderr
    assert_marginals_match(samples["x"], post_x)


def test_two_kernels_as_gibbs_blocks_sample_two_coupled_sequences_exactly():
    def model(y):
        a = numpyro.sample("a", PRIOR)
        b = numpyro.sample("b", PRIOR)
        numpyro.sample("y", dist.Normal(jnp.sum(a * b).astype(jnp.float32), 2.0), obs=y)

    gibbs = Gibbs([(IndependenceKernel(model, site="a"), ["a"]), (ClozeKernel(model, site="b", mode="mh"), ["b"])])
    mcmc = MCMC(gibbs, num_warmup=100, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(5), 9.0)
    samples = mcmc.get_samples()

    log_joint = prior_table()[:, None] + prior_table()[None, :] + norm.logpdf(9.0, XS @ XS.T, 2.0)
    joint = np.exp(log_joint - logsumexp(log_joint))
    assert_marginals_match(samples["a"], joint.sum(axis=1))
    assert_marginals_match(samples["b"], joint.sum(axis=0))
    shift = [np.abs((joint.sum(axis=1) - np.exp(prior_table())) @ (XS == k)).max() for k in range(K)]
    assert max(shift) > 0.1  # the data move the marginals well beyond the tolerance


def assert_marginals_match(x, post, tolerance=5):
    """Per-position token frequencies of one chain against the exact marginals, within ``tolerance`` ESS-based SEs."""
    x = np.asarray(x)
    for k in range(K):
        indicator = (x == k).astype(float)
        stderr = indicator.std(axis=0) / np.sqrt(effective_sample_size(indicator[None]))
        np.testing.assert_array_less(np.abs(indicator.mean(axis=0) - post @ (XS == k)), tolerance * stderr + 0.01)


@pytest.mark.slow  # HMCGibbs is checked against grids in test_continuous_models and test_scan
def test_hmcgibbs_recovers_an_unknown_noise_scale():
    W, y, x_true = synthetic_data(30, 0.5, 3)
    kernel = HMCGibbs(NUTS(unknown_noise_model), gibbs_fn=gibbs_fn(unknown_noise_model, "x", model_args=(W, y)),
                      gibbs_sites=["x"])
    mcmc = MCMC(kernel, num_warmup=150, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.key(3), W, y)
    samples = mcmc.get_samples()
    post_x, mean_sigma, sigmas, density = exact_unknown_noise_posterior(W, y)
    sd_sigma = float(np.sqrt(density @ (sigmas - mean_sigma) ** 2))

    assert XS[np.argmax(post_x)].tolist() == x_true.tolist()
    assert abs(mean_sigma - 0.5) < 3 * sd_sigma
    np.testing.assert_array_equal(np.asarray(samples["x"][-300:]), np.broadcast_to(x_true, (300, N)))
    sigma = np.asarray(samples["sigma"])
    sigma_stderr = sigma.std() / np.sqrt(effective_sample_size(sigma[None]))
    assert abs(sigma.mean() - mean_sigma) < 5 * sigma_stderr


def test_bad_models_and_arguments_raise_before_sampling():
    def run(kernel, *args, **kwargs):
        MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False).run(jax.random.key(0), *args, **kwargs)

    with pytest.raises(ValueError, match="site 'z' is not a sample site"):
        run(IndependenceKernel(known_noise_model, site="z"), *KNOWN)
    with pytest.raises(ValueError, match="site 'y' is observed"):
        run(ClozeKernel(known_noise_model, site="y"), *KNOWN)
    with pytest.raises(ValueError, match=r"other latent sites \['sigma'\]"):
        run(IndependenceKernel(unknown_noise_model), *KNOWN)

    def two_sequences():
        numpyro.sample("a", PRIOR)
        numpyro.sample("b", PRIOR)

    with pytest.raises(ValueError, match=r"exactly one unobserved arjax.Autoregressive site, found \['a', 'b'\]"):
        run(ClozeKernel(two_sequences))
    with pytest.raises(ValueError, match=r"positions must lie in 0..4, got \[7\]"):
        run(ClozeKernel(known_noise_model, positions=[0, 7]), *KNOWN)
    with pytest.raises(ValueError, match=r"positions must be distinct"):
        ClozeKernel(known_noise_model, positions=[1, 1])
    with pytest.raises(ValueError, match="mode must be one of"):
        ClozeKernel(known_noise_model, mode="heat-bath")
    with pytest.raises(ValueError, match=r"init_params\['x'\] must have shape \(5,\)"):
        run(ClozeKernel(known_noise_model), *KNOWN, init_params={"x": jnp.zeros(4, jnp.int32)})
    with pytest.raises(ValueError, match=r"init_params\['x'\] holds tokens outside 0..2"):
        run(ClozeKernel(known_noise_model), *KNOWN, init_params={"x": jnp.full(5, 3, jnp.int32)})
    other = Autoregressive(TableNet(np.zeros(2**N), N, 2))
    with pytest.raises(ValueError, match="proposal has num_positions=5, num_categories=2, but site 'x' has 5, 3"):
        run(IndependenceKernel(known_noise_model, proposal=other), *KNOWN)
    with pytest.raises(ValueError, match="algorithm must be 'cloze' or 'independence'"):
        gibbs_fn(known_noise_model, "x", algorithm="nuts")
