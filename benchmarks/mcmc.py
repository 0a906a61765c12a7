"""Effective samples per second of arjax's MCMC kernels vs NumPyro's ``DiscreteHMCGibbs``.

The posterior: ``N`` binary sites with an autoregressive prior ``p(x)`` (a MADE, width 64, depth 2,
randomly initialised with its default initialisation) and ``--measurements`` noisy linear
measurements ``y = A x + ε``, ``A_ij ~ N(0, 1/N)``, ``ε ~ N(0, σ²)`` (``--noise``), ``y`` simulated
from one prior draw. Target ``π(x) ∝ p(x) N(y; A x, σ²)``. Every sampler runs ``--chains`` chains for
``--warmup`` discarded plus ``--samples`` kept steps, started from prior draws:

- ``independence``: ``arjax.mcmc.independence(ln π, prior)`` (the prior as whole-sequence proposal).
- ``independence_fitted``: the same, with a proposal fitted to the posterior first: a copy of the
  prior's MADE trained by ``arjax.train.fit_free_energy`` on ``E(x) = -ln π(x)`` at β = 1
  (``--fit-steps`` steps × batch 256, Adam 3e-3). Its training time is reported as ``fit_s``,
  apart from the sampling time; ``ess_per_s_incl_fit`` charges it to the run.
- ``independence_batched`` / ``independence_fitted_batched``: the same two chains (same keys, same
  decisions) run by ``arjax.mcmc.run_independence``, which draws and scores the proposals of all
  steps and chains in vectorised blocks and then scans the accept/reject decisions.
- ``cloze_gibbs`` / ``cloze_mh``: ``arjax.mcmc.cloze(ln π, prior, mode=...)``, one sweep over all
  sites per step.
- ``discrete_hmc_gibbs_baseline``: ``numpyro.infer.DiscreteHMCGibbs(NUTS(model))`` in
  ``numpyro.infer.MCMC`` (one sweep of coordinate-wise Gibbs over the sites per step, in random
  order; the NUTS block owns no site here). ``discrete_gibbs_baseline``: its discrete block alone,
  ``numpyro.infer.DiscreteGibbs(model)``, the cheaper way to run NumPyro on a purely discrete model.
  ``Gibbs`` kernels refuse ``chain_method="vectorized"``, so the chains use ``chain_method=jax.vmap``.
  NumPyro's discrete kernels only pick sites whose distribution has ``has_enumerate_support``,
  which ``arjax.Autoregressive`` (2^N states) rightly lacks, so the baseline's model uses
  ``_BaselineAdapter``: a subclass that claims enumerate support and returns the per-coordinate
  support ``[[0], [1]]``, the size DiscreteGibbs reads for each coordinate (semantically wrong for
  anything else; here only to let the baseline run).

Timing: each whole run (ours: ``jax.jit`` of ``arjax.mcmc.run_chains``; NumPyro: ``jax.jit`` of a
function that builds ``MCMC`` and calls ``run``) is compiled ahead of time (``compile_s``), then
the best of ``--repeats`` calls is timed (warm-up + kept steps, all chains). ESS comes from
``numpyro.diagnostics.effective_sample_size`` over the chains of the kept steps, for two scalar
summaries (the log-likelihood ``ln N(y; A x, σ²)`` and ``Σx``) and per site (mean over sites).
``value`` of each sampler line is the ESS/s of the log-likelihood; ``mcmc_speedup`` lines give
ours / ``DiscreteHMCGibbs`` per N for it (``value``) and for Σx and the per-site mean (extras), and
``vs_discrete_gibbs`` against the bare ``DiscreteGibbs``.

Run: python benchmarks/mcmc.py [--sizes 16,32,64] [--samples 2000] [--chains 4] [--quick]
"""

import argparse
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from common import emit, emit_environment
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, DiscreteGibbs, DiscreteHMCGibbs

import arjax.mcmc
from arjax import Autoregressive
from arjax.nn import MADE
from arjax.targets import EnergyTarget
from arjax.train import fit_free_energy

OURS = (
    "independence",
    "independence_fitted",
    "independence_batched",
    "independence_fitted_batched",
    "cloze_gibbs",
    "cloze_mh",
)
BASELINES = ("discrete_hmc_gibbs_baseline", "discrete_gibbs_baseline")


class _BaselineAdapter(Autoregressive):
    """The baseline's adapter (not arjax API): lets NumPyro's ``DiscreteGibbs`` see the site.

    ``DiscreteGibbs`` selects sites with ``has_enumerate_support`` and reads
    ``enumerate_support(False).shape[0]`` as the support size of *each coordinate*; the true
    support has ``K**N`` rows, so this returns the per-coordinate values ``arange(K)[:, None]``.
    """

    has_enumerate_support = True

    def enumerate_support(self, expand=True):
        return jnp.arange(self.num_categories)[:, None]


class Problem:
    """Prior, measurements and the log-densities shared by every sampler for one ``N``."""

    def __init__(self, n, num_measurements, noise, seed):
        keys = jax.random.split(jax.random.key(seed), 4)
        self.n, self.noise = n, noise
        self.net = MADE(n, 2, width=64, depth=2, key=keys[0])
        self.prior = Autoregressive(self.net)
        self.A = jax.random.normal(keys[1], (num_measurements, n)) / np.sqrt(n)
        truth = self.prior.sample(keys[2])
        self.y = self.A @ truth.astype(jnp.float32) + noise * jax.random.normal(keys[3], (num_measurements,))
        self.init_key = jax.random.fold_in(keys[0], 1)

    def loglik(self, x):
        return jnp.sum(dist.Normal(self.A @ x.astype(jnp.float32), self.noise).log_prob(self.y), axis=-1)

    def logdensity(self, x):
        return self.prior.log_prob(x) + self.loglik(x)

    def numpyro_model(self, y):
        x = numpyro.sample("x", _BaselineAdapter(self.net))
        numpyro.sample("y", dist.Normal(self.A @ x.astype(jnp.float32), self.noise).to_event(1), obs=y)


def fitted_proposal(problem, num_steps, seed):
    """A copy of the prior's net fitted to the posterior by reverse KL; returns ``(proposal, seconds)``."""
    logdensity = problem.logdensity
    target = EnergyTarget(lambda x: -logdensity(x), problem.n, 2)
    start = time.perf_counter()
    net, _ = fit_free_energy(problem.net, target, 1.0, optimizer=optax.adam(3e-3), num_steps=num_steps,
                             batch_size=256, key=jax.random.key(seed + 7), log_every=max(num_steps // 4, 1),
                             progress=False)  # fmt: skip
    jax.block_until_ready(net)
    return Autoregressive(net), time.perf_counter() - start


def our_runner(problem, method, num_chains, num_steps, proposal=None):
    starts = problem.prior.sample(problem.init_key, (num_chains,))
    if method.endswith("_batched"):
        proposal = proposal or problem.prior

        def run_batched(key):
            positions, infos = arjax.mcmc.run_independence(key, problem.logdensity, proposal, starts, num_steps)
            return positions, jnp.mean(infos.acceptance_rate)

        return eqx.filter_jit(run_batched)
    if method.startswith("independence"):
        algorithm = arjax.mcmc.independence(problem.logdensity, proposal or problem.prior)
    else:
        algorithm = arjax.mcmc.cloze(problem.logdensity, problem.prior, mode=method.removeprefix("cloze_"))

    def run(key):
        positions, infos = arjax.mcmc.run_chains(key, algorithm, starts, num_steps)
        return positions, jnp.mean(infos.acceptance_rate)

    return eqx.filter_jit(run)


def baseline_runner(problem, method, num_chains, num_warmup, num_samples):
    def run(key):
        model = problem.numpyro_model
        kernel = DiscreteHMCGibbs(NUTS(model)) if method == "discrete_hmc_gibbs_baseline" else DiscreteGibbs(model)
        mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    chain_method=jax.vmap, progress_bar=False)  # fmt: skip
        mcmc.run(key, problem.y)
        return mcmc.get_samples(group_by_chain=True)["x"], jnp.full((), jnp.nan)

    return jax.jit(run)


def measure(problem, method, args, fitted):
    num_steps = args.warmup + args.samples
    fit_s = 0.0
    if method.startswith("independence_fitted"):
        if not fitted:
            fitted.extend(fitted_proposal(problem, args.fit_steps, args.seed))
        proposal, fit_s = fitted
        run = our_runner(problem, method, args.chains, num_steps, proposal)
    elif method in OURS:
        run = our_runner(problem, method, args.chains, num_steps)
    else:
        run = baseline_runner(problem, method, args.chains, args.warmup, args.samples)
    key = jax.random.key(args.seed + 1)
    start = time.perf_counter()
    compiled = run.lower(key).compile()
    compile_s = time.perf_counter() - start
    best = float("inf")
    for r in range(args.repeats):
        start = time.perf_counter()
        positions, acceptance = jax.block_until_ready(compiled(jax.random.fold_in(key, r)))
        best = min(best, time.perf_counter() - start)
    positions = np.asarray(positions)[:, -args.samples :]  # [chains, samples, N]
    loglik = np.asarray(jax.vmap(jax.vmap(problem.loglik))(jnp.asarray(positions)))
    sum_x = positions.sum(-1).astype(np.float64)
    per_site = effective_sample_size(positions.astype(np.float64))
    ess = dict(
        loglik=float(effective_sample_size(loglik.astype(np.float64))),
        sum_x=float(effective_sample_size(sum_x)),
        site_mean=float(np.nanmean(per_site)),
    )
    return dict(compile_s=compile_s, run_s=best, fit_s=fit_s, ess=ess, mean_sum_x=float(sum_x.mean()),
                acceptance=float(acceptance))  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16,32,64", help="comma-separated numbers of binary sites N")
    parser.add_argument("--samples", type=int, default=2000, help="kept steps per chain")
    parser.add_argument("--warmup", type=int, default=None, help="discarded steps per chain (default samples/4)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--measurements", type=int, default=4, help="rows of A")
    parser.add_argument("--noise", type=float, default=0.5, help="measurement noise σ")
    parser.add_argument("--fit-steps", type=int, default=1000, help="training steps of independence_fitted")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per sampler (best kept)")
    parser.add_argument("--methods", default=",".join(OURS + BASELINES), help="comma-separated samplers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=16, 200 samples, 2 chains, 1 repeat, 50 fit steps"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.samples, args.chains, args.repeats, args.fit_steps = "16", 200, 2, 1, 50
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(OURS + BASELINES))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {OURS + BASELINES}")
    if args.warmup is None:
        args.warmup = args.samples // 4
    return args


def main(argv=None):
    args = parse_args(argv)
    emit_environment()
    for n in args.sizes:
        problem = Problem(n, args.measurements, args.noise, args.seed)
        config = dict(N=n, K=2, chains=args.chains, samples=args.samples, warmup=args.warmup,
                      measurements=args.measurements, noise=args.noise)  # fmt: skip
        results, fitted = {}, []
        for method in args.methods:
            r = results[method] = measure(problem, method, args, fitted)
            rates = {k: v / r["run_s"] for k, v in r["ess"].items()}
            emit(f"mcmc_{method}", rates["loglik"], "ESS/s", ess_per_s_sum_x=rates["sum_x"],
                 ess_per_s_site_mean=rates["site_mean"], ess_loglik=r["ess"]["loglik"], ess_sum_x=r["ess"]["sum_x"],
                 ess_site_mean=r["ess"]["site_mean"], run_s=r["run_s"], compile_s=r["compile_s"],
                 acceptance=r["acceptance"], mean_sum_x=r["mean_sum_x"], **config,
                 **(dict(fit_s=r["fit_s"], ess_per_s_incl_fit=r["ess"]["loglik"] / (r["run_s"] + r["fit_s"]))
                    if r["fit_s"] else {}))  # fmt: skip
        for baseline, tag in [("discrete_hmc_gibbs_baseline", ""), ("discrete_gibbs_baseline", "_vs_discrete_gibbs")]:
            if baseline not in results:
                continue
            b = results[baseline]
            for method in (m for m in OURS if m in results):
                o = results[method]
                ratio = {k: (o["ess"][k] / o["run_s"]) / (b["ess"][k] / b["run_s"]) for k in o["ess"]}
                emit(f"mcmc_speedup{tag}", ratio["loglik"], "x", method=method, baseline=baseline,
                     sum_x=ratio["sum_x"], site_mean=ratio["site_mean"], N=n)  # fmt: skip
    emit("load_average_1min", os.getloadavg()[0], "processes")


if __name__ == "__main__":
    main()
