"""Real-valued autoregressive priors and guides inside NumPyro models: NUTS, HMCGibbs with arjax's cloze kernel
for a token site beside them, and SVI with a reparameterised autoregressive guide — each against a grid."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, SVI, HMCGibbs, Trace_ELBO

from arjax import Autoregressive
from arjax.families import GaussianMixture
from arjax.mcmc.numpyro import gibbs_fn
from arjax.nn import MADE
from arjax.svi import autoregressive_guide, guide_net
from arjax.train import fit_mle

NODES = np.linspace(-5, 5, 161)
GRID = np.stack(np.meshgrid(NODES, NODES, indexing="ij"), -1).reshape(-1, 2)


def _banana(key, n):
    """A curved 2-D density: z0 ~ N(0, 1), z1 | z0 ~ N(z0²/2 - 1, 0.5²)."""
    a, b = jax.random.normal(key, (2, n))
    return jnp.stack([a, 0.5 * a**2 - 1 + 0.5 * b], -1)


def _trained_prior():
    net = MADE(num_positions=2, families=GaussianMixture(3), width=32, depth=2, key=jax.random.key(0))
    net, _ = fit_mle(net, _banana(jax.random.key(1), 4000), optimizer=optax.adam(1e-2), num_steps=400, batch_size=256,
                     key=jax.random.key(2), progress=False, log_every=200)  # fmt: skip
    return Autoregressive(net)


def _grid_moments(log_density):
    w = np.exp(log_density - log_density.max())
    w /= w.sum()
    mean = w @ GRID
    return mean, w @ (GRID - mean) ** 2


def test_nuts_with_a_trained_prior_matches_the_grid_posterior():
    prior = _trained_prior()
    y = 0.8

    def model():
        z = numpyro.sample("z", prior)
        numpyro.sample("y", dist.Normal(z[0], 0.5), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=1000, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.key(3))
    z = np.asarray(mcmc.get_samples()["z"])
    log_post = np.asarray(prior.log_prob(jnp.asarray(GRID, jnp.float32))) + np.asarray(
        dist.Normal(GRID[:, 0], 0.5).log_prob(y))
    mean, var = _grid_moments(log_post)
    ess = np.asarray(effective_sample_size(z[None]))
    assert np.all(np.abs(z.mean(0) - mean) < 3 * np.sqrt(var / ess))
    assert np.all(np.abs(z.var(0) - var) < 3 * var * np.sqrt(2 / ess) + 0.02)


def test_hmc_gibbs_samples_a_real_and_a_token_site_together():
    tokens = MADE(num_positions=3, num_categories=2, width=8, key=jax.random.key(4))
    real = MADE(num_positions=2, families=GaussianMixture(1), width=8, context_size=3, key=jax.random.key(5))
    y = 2.5

    def model():
        t = numpyro.sample("t", Autoregressive(tokens))
        z = numpyro.sample("z", Autoregressive(real, context=t.astype(jnp.float32)))
        numpyro.sample("y", dist.Normal(z.sum() + t.sum(), 0.7), obs=y)

    kernel = HMCGibbs(NUTS(model), gibbs_fn=gibbs_fn(model, "t"), gibbs_sites=["t"])
    mcmc = MCMC(kernel, num_warmup=300, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(6))
    samples = mcmc.get_samples()
    # exact: enumerate the 8 token sequences, integrate z on the grid
    all_t = jnp.asarray(np.array(np.meshgrid(*[[0, 1]] * 3, indexing="ij")).reshape(3, -1).T, jnp.int32)
    log_t = np.asarray(Autoregressive(tokens).log_prob(all_t))
    grid = jnp.asarray(GRID, jnp.float32)
    log_z = np.stack([np.asarray(Autoregressive(real, context=t.astype(jnp.float32)).log_prob(grid)) for t in all_t])
    likelihood = dist.Normal(GRID.sum(-1)[None] + all_t.sum(-1)[:, None], 0.7).log_prob(y)
    log_joint = log_t[:, None] + log_z + np.asarray(likelihood)
    joint = np.exp(log_joint - log_joint.max())
    joint /= joint.sum()
    exact_sum_t = joint.sum(1) @ np.asarray(all_t.sum(-1))
    exact_mean_z = joint.sum(0) @ GRID
    sum_t = np.asarray(samples["t"].sum(-1), float)
    ess = float(effective_sample_size(sum_t[None]))
    assert abs(sum_t.mean() - exact_sum_t) < 4 * sum_t.std() / np.sqrt(ess)
    z = np.asarray(samples["z"])
    ess_z = np.asarray(effective_sample_size(z[None]))
    assert np.all(np.abs(z.mean(0) - exact_mean_z) < 4 * z.std(0) / np.sqrt(ess_z))


def test_svi_trains_a_reparameterised_autoregressive_guide_to_the_posterior():
    y = 0.0

    def model():  # a curved posterior: z1 ≈ z0²
        z = numpyro.sample("z", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        numpyro.sample("y", dist.Normal(z[1] - z[0] ** 2, 0.3), obs=y)

    net = MADE(num_positions=2, families=GaussianMixture(2), width=32, depth=2, key=jax.random.key(7))
    guide = autoregressive_guide(net, "z")
    optimizer = numpyro.optim.optax_to_numpyro(optax.adam(optax.cosine_decay_schedule(1e-2, 2000, 0.02)))
    svi = SVI(model, guide, optimizer, Trace_ELBO(num_particles=8))
    result = svi.run(jax.random.key(8), 2000, progress_bar=False)
    log_prior = dist.Normal(0.0, 1.0).log_prob(GRID).sum(-1)
    log_post = np.asarray(log_prior + dist.Normal(GRID[:, 1] - GRID[:, 0] ** 2, 0.3).log_prob(y))
    top = log_post.max()
    log_evidence = top + np.log(np.sum(np.exp(log_post - top)) * (NODES[1] - NODES[0]) ** 2)
    trained = Autoregressive(guide_net(result.params, net, "z"))
    z, log_q = trained.sample_and_log_prob(jax.random.key(9), (20_000,))
    log_p = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + dist.Normal(z[:, 1] - z[:, 0] ** 2, 0.3).log_prob(y)
    kl = float(jnp.mean(log_q - log_p)) + log_evidence  # KL(q ‖ posterior) = E_q[ln q - ln p(z, y)] + ln p(y)
    assert 0 <= kl + 3 * float(jnp.std(log_q - log_p)) / np.sqrt(len(z)) and kl < 0.05


def test_independence_mh_with_a_real_valued_proposal_reaches_a_tilted_target():
    from arjax.mcmc import run_independence

    proposal = Autoregressive(MADE(num_positions=2, families=GaussianMixture(2), width=8, key=jax.random.key(10)))

    def logdensity(x):  # the proposal tilted towards x_0 = 1
        return proposal.log_prob(x) - 0.5 * (x[0] - 1.0) ** 2 / 0.25

    chains, info = run_independence(jax.random.key(11), logdensity, proposal, jnp.zeros((8, 2)), 1500)
    draws = np.asarray(chains[:, 300:].reshape(-1, 2))
    mean, var = _grid_moments(np.asarray(jax.vmap(logdensity)(jnp.asarray(GRID, jnp.float32))))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * np.sqrt(var / 2000)), (draws.mean(0), mean)
