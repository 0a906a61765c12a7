"""Condition a learned autoregressive prior on noisy measurements, and check MCMC against enumeration.

1. Data: binary sequences of length N from a persistent Markov chain (x_0 ~ Bernoulli(½),
   x_i = x_{i-1} with probability ``--stay``). A MADE prior p(x) is fitted to them with
   ``arjax.train.fit_mle``.
2. Observation model: ``--measurements`` noisy linear measurements y = A x + ε, A_ij ~ N(0, 1),
   ε ~ N(0, σ²), of one fresh draw of the generator. Posterior π(x) ∝ p(x) N(y; A x, σ²).
3. Posterior samples by MCMC, each from chains started at prior draws:
   ``arjax.mcmc.independence`` (the prior as whole-sequence proposal; the acceptance ratio is
   the likelihood ratio), ``arjax.mcmc.cloze`` (``mode="gibbs"``, one sweep per step), both run
   with ``arjax.mcmc.run_chains``; and ``arjax.mcmc.numpyro.ClozeKernel`` on the NumPyro model
   inside ``numpyro.infer.MCMC`` (with its ``print_summary``).
4. Exact posterior marginals P(x_i = 1 | y) by enumerating all 2^N sequences
   (``arjax.testing.all_sequences``), against which every sampler's marginals are compared; the
   table also shows the prior marginals, so the effect of conditioning is visible.

Writes ``posterior_conditioning_N{N}.png`` (exact vs MCMC marginals per site) and
``posterior_conditioning_N{N}.npz`` (the enumerated log-prior table, A, y, σ) to ``--out``.

Run:
    python examples/posterior_conditioning.py --quick    # < 40 s: N=12
    python examples/posterior_conditioning.py            # N=14, longer training and chains
"""

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import MCMC
from scipy.special import logsumexp

import arjax.mcmc
from arjax import Autoregressive
from arjax.mcmc.numpyro import ClozeKernel
from arjax.nn import MADE
from arjax.testing import all_sequences
from arjax.train import fit_mle

SAMPLERS = ("independence", "cloze_gibbs", "numpyro_cloze")


def markov_chain_data(rng: np.random.Generator, num_sequences: int, n: int, stay: float) -> np.ndarray:
    """Binary sequences with x_0 ~ Bernoulli(½) and P(x_i = x_{i-1}) = ``stay``."""
    x = np.empty((num_sequences, n), np.int32)
    x[:, 0] = rng.integers(0, 2, num_sequences)
    flips = rng.random((num_sequences, n - 1)) > stay
    for i in range(1, n):
        x[:, i] = x[:, i - 1] ^ flips[:, i - 1]
    return x


class Posterior:
    """The prior, the measurements, ``ln π`` for one sequence and the exact enumeration."""

    def __init__(self, prior: Autoregressive, A: np.ndarray, y: np.ndarray, noise: float):
        self.prior, self.noise = prior, noise
        self.A, self.y = jnp.asarray(A, jnp.float32), jnp.asarray(y, jnp.float32)

    def loglik(self, x):
        return jnp.sum(dist.Normal(self.A @ x.astype(jnp.float32), self.noise).log_prob(self.y), axis=-1)

    def logdensity(self, x):
        return self.prior.log_prob(x) + self.loglik(x)

    def numpyro_model(self, A, y):
        x = numpyro.sample("x", self.prior)
        numpyro.sample("y", dist.Normal(A @ x.astype(jnp.float32), self.noise).to_event(1), obs=y)

    def exact(self):
        """``(sequences, log-prior table, prior marginals, posterior marginals)`` by enumeration."""
        xs = all_sequences(self.prior.num_positions, 2)
        log_prior = np.asarray(jax.jit(self.prior.log_prob)(xs), np.float64)
        log_lik = np.asarray(jax.jit(jax.vmap(self.loglik))(xs), np.float64)
        xs = np.asarray(xs)
        prior_weights = np.exp(log_prior - logsumexp(log_prior))
        log_post = log_prior + log_lik
        post_weights = np.exp(log_post - logsumexp(log_post))
        return xs, log_prior, prior_weights @ xs, post_weights @ xs


def run_arjax(posterior: Posterior, method: str, key, num_chains: int, num_warmup: int, num_samples: int):
    """Samples ``[chains, samples, N]`` and the mean acceptance rate of one arjax sampler."""
    prior = posterior.prior
    if method == "independence":
        algorithm = arjax.mcmc.independence(posterior.logdensity, prior)
    else:
        algorithm = arjax.mcmc.cloze(posterior.logdensity, prior, mode="gibbs")
    key_start, key_run = jax.random.split(key)
    starts = prior.sample(key_start, (num_chains,))

    @eqx.filter_jit
    def run(key):
        positions, infos = arjax.mcmc.run_chains(key, algorithm, starts, num_warmup + num_samples)
        return positions[:, num_warmup:], jnp.mean(infos.acceptance_rate)

    positions, acceptance = run(key_run)
    return np.asarray(positions), float(acceptance)


def run_numpyro(posterior: Posterior, key, num_chains: int, num_warmup: int, num_samples: int):
    """Samples ``[chains, samples, N]`` from ``ClozeKernel`` in ``numpyro.infer.MCMC``, after its summary."""
    mcmc = MCMC(ClozeKernel(posterior.numpyro_model, mode="gibbs"), num_warmup=num_warmup, num_samples=num_samples,
                num_chains=num_chains, chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(key, posterior.A, posterior.y)
    mcmc.print_summary(exclude_deterministic=False)
    return np.asarray(mcmc.get_samples(group_by_chain=True)["x"]), float("nan")


def plot(prior_marginals, exact, estimates: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = exact.shape[0]
    sites = np.arange(n)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 5.6), sharex=True, layout="constrained",
                                      gridspec_kw=dict(height_ratios=[2, 1]))  # fmt: skip
    top.plot(sites, prior_marginals, color="grey", ls=":", marker=".", label="prior (exact)")
    top.plot(sites, exact, color="black", lw=2, marker="o", label="posterior (exact, enumeration)")
    markers = {"independence": "x", "cloze_gibbs": "+", "numpyro_cloze": "^"}
    for c, (name, marginals) in enumerate(estimates.items()):
        top.plot(sites, marginals, ls="none", marker=markers[name], ms=9, color=f"C{c}", label=f"{name} (MCMC)")
        bottom.plot(sites, marginals - exact, marker=markers[name], color=f"C{c}", label=name)
    top.set_ylabel(r"$P(x_i = 1)$")
    top.set_ylim(-0.02, 1.02)
    top.legend(fontsize=8, ncol=2)
    top.set_title(f"N={n}: MADE prior (fit_mle) conditioned on {args.measurements} noisy linear measurements")
    bottom.axhline(0.0, color="black", lw=0.8)
    bottom.set_ylabel("MCMC − exact")
    bottom.set_xlabel("site i")
    bottom.set_xticks(sites)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="< 40 s: N=12, 2000 sequences, 300 training steps, 8 chains × 1000 samples "
                             "(overrides the options below)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the plot (default out/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--N", type=int, default=14, help="sequence length (2^N ≤ 2^16 for enumeration)")
    parser.add_argument("--stay", type=float, default=0.8, help="Markov chain: P(x_i = x_{i-1})")
    parser.add_argument("--data", type=int, default=5000, help="training sequences")
    parser.add_argument("--steps", type=int, default=1000, help="fit_mle steps (Adam lr 1e-2, batch 128)")
    parser.add_argument("--width", type=int, default=64, help="MADE hidden width")
    parser.add_argument("--measurements", type=int, default=3, help="rows of A")
    parser.add_argument("--noise", type=float, default=3.0, help="measurement noise σ")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200, help="discarded steps per chain")
    parser.add_argument("--samples", type=int, default=3000, help="kept steps per chain")
    args = parser.parse_args(argv)
    if args.quick:
        args.N, args.data, args.steps, args.width = 12, 2000, 300, 32
        args.chains, args.warmup, args.samples = 8, 100, 1000
    if not 2 <= args.N <= 16:
        parser.error(f"--N must be in 2..16 (exact enumeration of 2^N sequences), got {args.N}")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    keys = jax.random.split(jax.random.key(args.seed), 5)
    n = args.N

    data = markov_chain_data(rng, args.data, n, args.stay)
    net = MADE(n, 2, width=args.width, depth=2, key=keys[0])
    net, history = fit_mle(net, data, optimizer=optax.adam(1e-2), batch_size=128, num_steps=args.steps, key=keys[1],
                           log_every=max(args.steps // 4, 1), progress=False)  # fmt: skip
    entropy = np.log(2) + (n - 1) * -(args.stay * np.log(args.stay) + (1 - args.stay) * np.log(1 - args.stay))
    print(f"prior: MADE(width {args.width}, depth 2) fitted by fit_mle to {args.data} Markov-chain sequences "
          f"(N={n}, stay={args.stay}) in {args.steps} steps: final NLL {history['nll'][-1]:.3f} nats "
          f"(generator entropy {entropy:.3f}); {time.perf_counter() - start:.1f}s")  # fmt: skip

    A = rng.standard_normal((args.measurements, n))
    truth = markov_chain_data(rng, 1, n, args.stay)[0]
    y = A @ truth + args.noise * rng.standard_normal(args.measurements)
    posterior = Posterior(Autoregressive(net), A, y, args.noise)
    print(
        f"observation: y = A x + ε, A {A.shape}, σ = {args.noise}; y = {np.array2string(y, precision=3)} "
        f"from x = {''.join(map(str, truth))}"
    )

    xs, log_prior, prior_marginals, exact = posterior.exact()
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"posterior_conditioning_N{n}.npz", log_prior=log_prior, A=A, y=y, noise=args.noise)
    print(f"exact: enumerated {xs.shape[0]} sequences; prior mass {np.exp(logsumexp(log_prior)):.6f}")

    estimates, rows = {}, []
    for i, name in enumerate(SAMPLERS):
        t0 = time.perf_counter()
        if name == "numpyro_cloze":
            print("numpyro.infer.MCMC(ClozeKernel(model, mode='gibbs')).print_summary():")
            samples, acceptance = run_numpyro(posterior, keys[2 + i], args.chains, args.warmup, args.samples)
        else:
            samples, acceptance = run_arjax(posterior, name, keys[2 + i], args.chains, args.warmup, args.samples)
        estimates[name] = samples.mean(axis=(0, 1))
        error = np.abs(estimates[name] - exact)
        rows.append((name, acceptance, error.max(), error.mean(), time.perf_counter() - t0))

    print(f"\nposterior marginals P(x_i = 1 | y), {args.chains} chains × {args.samples} samples "
          f"(after {args.warmup} warm-up steps) per sampler")  # fmt: skip
    print(f"{'site':>4}{'prior':>10}{'exact':>10}" + "".join(f"{s:>15}" for s in SAMPLERS))
    for site in range(n):
        print(f"{site:>4}{prior_marginals[site]:>10.4f}{exact[site]:>10.4f}"
              + "".join(f"{estimates[s][site]:>15.4f}" for s in SAMPLERS))  # fmt: skip
    print(f"\n{'sampler':<15}{'acceptance':>12}{'max |err|':>12}{'mean |err|':>12}{'time':>9}")
    for name, acceptance, max_err, mean_err, seconds in rows:
        print(f"{name:<15}{acceptance:>12.3f}{max_err:>12.4f}{mean_err:>12.4f}{seconds:>8.1f}s")

    path = args.out / f"posterior_conditioning_N{n}.png"
    plot(prior_marginals, exact, estimates, args, path)
    print(f"plot: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
