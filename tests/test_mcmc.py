"""BlackJAX-style kernels over sequences, checked against exact enumeration of every state."""

import functools

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TableNet, chi_square_pvalue, sequence_index
from scipy.special import logsumexp

import arjax.mcmc
from arjax import Autoregressive
from arjax.nn import MADE
from arjax.targets import IsingSquare
from arjax.testing import all_sequences
from arjax.train import fit_free_energy

NUM_CHAINS = 1000
NUM_STEPS = {"independence": 60, "cloze-gibbs": 25, "cloze-mh": 40, "subset-gibbs": 10, "subset-mh": 15}
SUBSET = (4, 1, 2)
PROBLEMS = {"K2-N8": (8, 2, 0), "K3-N5": (5, 3, 1)}
MASK = np.ones((5, 3), bool)
MASK[1, 2] = MASK[3, 0] = False
P_MIN = 1e-3
FAST_COMPILE = {"xla_backend_optimization_level": 0}


class Problem:
    """An exact prior table p(x) and a noisy linear measurement y = w·x + N(0, 1): posterior π(x) ∝ p(x) L(x)."""

    def __init__(self, num_positions, num_categories, seed):
        rng = np.random.default_rng(seed)
        self.num_positions, self.num_categories = num_positions, num_categories
        self.log_prior_all = 1.5 * rng.standard_normal(num_categories**num_positions)
        self.log_prior_all -= logsumexp(self.log_prior_all)
        self.prior = Autoregressive(TableNet(self.log_prior_all, num_positions, num_categories))
        self.w = rng.standard_normal(num_positions).astype(np.float32)
        self.y = np.float32(self.w @ rng.integers(0, num_categories, num_positions) + rng.standard_normal())
        self.xs = np.asarray(all_sequences(num_positions, num_categories))
        self.log_post_all = self.log_prior_all - 0.5 * (self.y - self.xs @ self.w.astype(np.float64)) ** 2
        self.log_evidence = float(logsumexp(self.log_post_all))
        self.post = np.exp(self.log_post_all - self.log_evidence)
        self.starts = rng.integers(0, num_categories, (NUM_CHAINS, num_positions)).astype(np.int32)
        self._runs = {}

    def loglik(self, x):
        return -0.5 * (self.y - self.w @ x) ** 2

    def logdensity(self, x):
        return self.prior.log_prob(x) + self.loglik(x)

    def proposal(self, log_p=None, allowed=None):
        """``Autoregressive`` of the table ``log_p`` (default the prior) under an ``allowed`` table (default all)."""
        log_p = self.log_prior_all if log_p is None else log_p
        allowed = np.ones((self.num_positions, self.num_categories), bool) if allowed is None else allowed
        return Autoregressive(TableNet(log_p, self.num_positions, self.num_categories), allowed=jnp.asarray(allowed))

    def run(self, variant="plain"):
        """Chains of every sampler (see ``run_all``) on this problem, computed once per variant.

        Variants: ``"plain"``; ``"perfect"`` (the exact posterior as proposal); ``"nan"`` (``ln π = NaN``
        where ``x[0] == 2``, chains started at ``x[0] < 2``); ``"masked"`` (the model disallows token 2 at
        position 1 and token 0 at position 3, chains started at allowed sequences).
        """
        if variant not in self._runs:
            start, proposal, nan_token = self.starts, self.proposal(), -1
            if variant == "perfect":
                proposal = self.proposal(self.log_post_all)
            elif variant == "nan":
                start, nan_token = start % 2, 2
            elif variant == "masked":
                proposal = self.proposal(allowed=MASK)
                start = start.copy()
                start[:, 1] %= 2
                start[:, 3] = 1 + start[:, 3] % 2
            positions = SUBSET if self.num_positions == 5 else None
            self._runs[variant] = run_all(
                jax.random.key(1), start, self.prior, proposal, self.w, self.y, nan_token, positions=positions
            )
        return self._runs[variant]


@functools.partial(jax.jit, static_argnames=("positions",), compiler_options=FAST_COMPILE)
def run_all(key, start, prior, proposal, w, y, nan_token, *, positions=None):
    """``{sampler: (chains [C, S, N], infos)}`` for independence MH (proposing from ``proposal``) and cloze
    sweeps (``proposal`` as the model), all on ``π ∝ p(x) L(x)`` with ``ln π = NaN`` where ``x[0] == nan_token``."""

    def logdensity(x):
        value = prior.log_prob(x) - 0.5 * (y - w @ x) ** 2
        return jnp.where(x[0] == nan_token, jnp.nan, value)

    algorithms = {
        "independence": arjax.mcmc.independence(logdensity, proposal),
        "cloze-gibbs": arjax.mcmc.cloze(logdensity, proposal, mode="gibbs"),
        "cloze-mh": arjax.mcmc.cloze(logdensity, proposal, mode="mh"),
    }
    if positions is not None:
        algorithms["subset-gibbs"] = arjax.mcmc.cloze(logdensity, proposal, positions=positions, mode="gibbs")
        algorithms["subset-mh"] = arjax.mcmc.cloze(logdensity, proposal, positions=positions, mode="mh")
    keys = jax.random.split(key, len(algorithms))
    runs = {
        name: arjax.mcmc.run_chains(k, algorithm, start, NUM_STEPS[name])
        for k, (name, algorithm) in zip(keys, algorithms.items())
    }
    # The same key as "independence": the batched runner must reproduce that chain (7 does not divide 60).
    runs["independence-batched"] = arjax.mcmc.run_independence(
        keys[0], logdensity, proposal, start, NUM_STEPS["independence"], block_size=7
    )
    return runs


@functools.cache
def make_problem(name):
    return Problem(*PROBLEMS[name])


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem(request):
    return make_problem(request.param)


@pytest.fixture(scope="module")
def runs(problem):
    return problem.run()


@pytest.fixture(scope="module")
def small_problem():
    return make_problem("K3-N5")


@pytest.mark.parametrize("sampler", ["independence", "cloze-gibbs", "cloze-mh"])
def test_final_states_of_many_chains_follow_the_exact_posterior(problem, runs, sampler):
    if sampler == "independence":
        max_weight = np.max(problem.post / np.exp(problem.log_prior_all))
        assert (1 - 1 / max_weight) ** NUM_STEPS[sampler] < 1e-4  # IMH's uniform-ergodicity bound on the distance to π
    chains, infos = runs[sampler]
    samples = np.asarray(chains[:, -1])
    assert chi_square_pvalue(samples, problem.post) > P_MIN
    assert chi_square_pvalue(samples, np.exp(problem.log_prior_all)) < 1e-6  # the test can tell prior from posterior
    assert 0.05 < float(jnp.mean(infos.acceptance_rate)) <= 1.0


@pytest.mark.parametrize(
    "name, variant", [("K2-N8", "plain"), ("K3-N5", "plain"), ("K3-N5", "nan"), ("K3-N5", "masked")]
)
def test_batched_independence_reproduces_the_stepwise_chains(name, variant):
    runs = make_problem(name).run(variant)
    (stepwise, stepwise_infos), (batched, batched_infos) = runs["independence"], runs["independence-batched"]
    assert batched.shape == stepwise.shape
    np.testing.assert_array_equal(batched_infos.proposal.position, stepwise_infos.proposal.position)
    # Batched and single evaluations of ln π may differ in the last float bit, which can flip a
    # decision whose uniform lies within ~1e-6 of the acceptance ratio (and the chain after it).
    identical = np.all(np.asarray(batched) == np.asarray(stepwise), axis=(1, 2))
    assert identical.mean() >= 0.99
    same = np.asarray(batched_infos.is_accepted)[identical] == np.asarray(stepwise_infos.is_accepted)[identical]
    assert same.all()
    np.testing.assert_allclose(batched_infos.acceptance_rate, stepwise_infos.acceptance_rate, atol=1e-4)


@pytest.mark.slow  # five block sizes; batched = stepwise is checked above
def test_batched_independence_gives_the_same_chains_for_any_block_size(small_problem):
    problem = small_problem
    run = jax.jit(arjax.mcmc.run_independence, static_argnums=(1, 4), static_argnames="block_size")
    reference, _ = run(jax.random.key(3), problem.logdensity, problem.prior, problem.starts[:8], 12, block_size=12)
    for block_size in (1, 5, None):
        chains, _ = run(jax.random.key(3), problem.logdensity, problem.prior, problem.starts[:8], 12,
                        block_size=block_size)  # fmt: skip
        np.testing.assert_array_equal(chains, reference)


def test_independence_with_the_target_as_proposal_always_accepts(small_problem):
    _, infos = small_problem.run("perfect")["independence"]
    assert float(jnp.min(infos.acceptance_rate)) > 1 - 1e-4
    assert bool(jnp.all(infos.is_accepted))


@pytest.mark.parametrize("mode", ["gibbs", "mh"])
def test_cloze_resamples_only_its_positions_from_the_exact_conditional(small_problem, mode):
    problem = small_problem
    chains, _ = problem.run()[f"subset-{mode}"]
    others = np.setdiff1d(np.arange(problem.num_positions), SUBSET)
    fixed = np.broadcast_to(problem.starts[:, None, others], chains[..., others].shape)
    np.testing.assert_array_equal(chains[..., others], fixed)
    same_context = np.all(problem.xs[None, :, others] == problem.starts[:, None, others], axis=-1)
    conditionals = np.where(same_context, problem.post, 0.0)
    expected = np.mean(conditionals / conditionals.sum(axis=1, keepdims=True), axis=0)
    assert chi_square_pvalue(chains[:, -1], expected) > P_MIN
    assert chi_square_pvalue(chains[:, -1], problem.post) < 1e-6


@pytest.mark.parametrize("sampler", ["independence", "independence-batched", "cloze-gibbs", "cloze-mh"])
def test_nan_logdensity_is_never_accepted(small_problem, sampler):
    chains, _ = small_problem.run("nan")[sampler]
    assert not bool(jnp.any(chains[..., 0] == 2))
    assert set(np.unique(np.asarray(chains[:, -1, 0]))) == {0, 1}
    state = arjax.mcmc.independence(lambda x: jnp.nan, small_problem.prior).init(jnp.array([2, 0, 0, 0, 0]))
    assert float(state.logdensity) == -np.inf


@pytest.mark.parametrize("sampler", ["independence", "independence-batched", "cloze-gibbs", "cloze-mh"])
def test_tokens_the_model_disallows_are_never_proposed(small_problem, sampler):
    problem = small_problem
    chains, _ = problem.run("masked")[sampler]
    assert not bool(jnp.any(chains[..., 1] == 2)) and not bool(jnp.any(chains[..., 3] == 0))
    restricted = np.where((problem.xs[:, 1] != 2) & (problem.xs[:, 3] != 0), problem.post, 0.0)
    assert chi_square_pvalue(chains[:, -1], restricted) > P_MIN


@pytest.fixture(scope="module")
def smc_runs(small_problem):
    """Tempered SMC with independence-MH moves and with cloze-Gibbs moves, compiled as one program."""
    problem = small_problem
    step_init = {
        "independence": (
            functools.partial(arjax.mcmc.independence.build_kernel(), proposal=problem.prior),
            functools.partial(arjax.mcmc.independence.init, proposal=problem.prior),
        ),
        "cloze": (
            functools.partial(
                arjax.mcmc.cloze.build_kernel("gibbs"), model=problem.prior, positions=jnp.arange(problem.num_positions)
            ),
            arjax.mcmc.cloze.init,
        ),
    }

    def run_smc(key, particles, step, init):
        smc = blackjax.tempered_smc(
            problem.prior.log_prob, problem.loglik, step, init, {}, blackjax.smc.resampling.systematic, num_mcmc_steps=2
        )

        def one(state, inputs):
            step_key, tempering = inputs
            state, info = smc.step(step_key, state, tempering)
            return state, info.log_likelihood_increment

        schedule = jnp.linspace(0.0, 1.0, 9)[1:]
        return jax.lax.scan(one, smc.init(particles), (jax.random.split(key, 8), schedule))

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(key, particles):
        return {name: run_smc(key, particles, *pair) for name, pair in step_init.items()}

    return run(jax.random.key(8), problem.starts)


@pytest.mark.parametrize("kernel", ["independence", "cloze"])
def test_tempered_smc_log_evidence_matches_enumeration(small_problem, smc_runs, kernel):
    problem = small_problem
    state, increments = smc_runs[kernel]
    assert abs(float(jnp.sum(increments)) - problem.log_evidence) < 0.1
    exact = np.stack([problem.post @ (problem.xs == k) for k in range(problem.num_categories)])
    found = np.stack([np.mean(np.asarray(state.particles) == k, axis=0) for k in range(problem.num_categories)])
    np.testing.assert_allclose(found, exact, atol=0.05)


def test_simulated_annealing_finds_the_posterior_mode(small_problem):
    problem = small_problem

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def anneal(keys, starts):
        def one(key, start):
            betas = jnp.geomspace(0.1, 30.0, 30)
            return arjax.mcmc.simulated_annealing(
                key, lambda f: arjax.mcmc.cloze(f, problem.prior), problem.logdensity, start, betas
            )

        return jax.vmap(one)(keys, starts)

    results = anneal(jax.random.split(jax.random.key(9), 8), problem.starts[:8])
    best = int(np.argmax(results.best_logdensity))
    mode = np.argmax(problem.log_post_all)
    assert int(sequence_index(results.best_position[best], problem.num_categories)) == mode
    assert float(results.best_logdensity[best]) == pytest.approx(problem.log_post_all[mode], abs=1e-4)
    assert results.logdensity.shape == (8, 30)


def test_tempered_scales_the_logdensity(small_problem):
    x = jnp.array([0, 1, 2, 1, 0])
    logdensity = small_problem.logdensity
    assert float(arjax.mcmc.tempered(logdensity, 0.25)(x)) == pytest.approx(0.25 * float(logdensity(x)), rel=1e-6)


def test_bad_inputs_raise_errors_naming_the_argument(small_problem):
    problem = small_problem
    other = Problem(6, 2, 0)
    independence = arjax.mcmc.independence(problem.logdensity, problem.prior)
    with pytest.raises(ValueError, match=r"position must have shape \(5,\)"):
        independence.init(jnp.zeros(4, jnp.int32))
    with pytest.raises(TypeError, match="position must hold integer tokens"):
        independence.init(jnp.zeros(5))
    with pytest.raises(ValueError, match=r"position holds tokens outside 0..2: found \[3\]"):
        independence.init(jnp.array([0, 1, 3, 0, 0]))
    with pytest.raises(ValueError, match=r"position must have shape \(6,\)"):
        arjax.mcmc.independence(problem.logdensity, other.prior).init(jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match=r"position holds tokens outside 0..1"):
        arjax.mcmc.independence(other.logdensity, other.prior).init(jnp.full(6, 2, jnp.int32))
    with pytest.raises(ValueError, match="proposal must be one distribution"):
        arjax.mcmc.independence(problem.logdensity, problem.prior.expand((2,)))
    with pytest.raises(TypeError, match="proposal must be a distribution"):
        arjax.mcmc.independence(problem.logdensity, "not a distribution")
    with pytest.raises(ValueError, match=r"mode must be one of \('gibbs', 'mh'\), got 'metropolis'"):
        arjax.mcmc.cloze(problem.logdensity, problem.prior, mode="metropolis")
    with pytest.raises(ValueError, match=r"positions must lie in 0..4, got \[5\]"):
        arjax.mcmc.cloze(problem.logdensity, problem.prior, positions=[0, 5])
    with pytest.raises(ValueError, match="positions must name at least one position"):
        arjax.mcmc.cloze(problem.logdensity, problem.prior, positions=[])
    with pytest.raises(ValueError, match=r"positions must be distinct, got duplicates \[1\]"):
        arjax.mcmc.cloze(problem.logdensity, problem.prior, positions=[1, 2, 1])
    with pytest.raises(TypeError, match="positions must be a 1-D sequence of ints"):
        arjax.mcmc.cloze(problem.logdensity, problem.prior, positions=[0.5, 1.0])
    with pytest.raises(TypeError, match="model must be an arjax.Autoregressive"):
        arjax.mcmc.cloze(problem.logdensity, "not a model")
    with pytest.raises(ValueError, match=r"position holds tokens outside 0..2"):
        arjax.mcmc.cloze(problem.logdensity, problem.prior).init(jnp.array([0, 0, 0, 0, -1]))
    with pytest.raises(ValueError, match="initial_positions must have shape"):
        arjax.mcmc.run_chains(jax.random.key(0), independence, jnp.zeros(5, jnp.int32), 3)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        arjax.mcmc.run_chains(jax.random.key(0), independence, jnp.zeros((2, 5), jnp.int32), 0)
    run = functools.partial(arjax.mcmc.run_independence, jax.random.key(0), problem.logdensity, problem.prior)
    with pytest.raises(ValueError, match=r"initial_positions must have shape \(num_chains, 5\)"):
        run(jnp.zeros(5, jnp.int32), 3)
    with pytest.raises(ValueError, match=r"initial_positions holds tokens outside 0..2: found \[3\]"):
        run(jnp.full((2, 5), 3, jnp.int32), 3)
    with pytest.raises(TypeError, match="initial_positions must hold integer tokens"):
        run(jnp.zeros((2, 5)), 3)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        run(jnp.zeros((2, 5), jnp.int32), 2.0)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        run(jnp.zeros((2, 5), jnp.int32), 3, block_size=0)
    with pytest.raises(ValueError, match="logdensity_fn must return a scalar"):
        arjax.mcmc.cloze(lambda x: jnp.zeros(2), problem.prior).init(jnp.zeros(5, jnp.int32))


@pytest.mark.slow
def test_neural_independence_mh_matches_the_exact_ising_energy():
    beta, target = 0.44, IsingSquare(4)
    xs = all_sequences(16, 2)
    energies = np.asarray(jax.vmap(target.energy)(xs), np.float64)
    weights = np.exp(-beta * (energies - energies.min()))
    exact = float(np.sum(weights * energies) / np.sum(weights))

    net = MADE(num_positions=16, num_categories=2, key=jax.random.key(0))
    net, _ = fit_free_energy(
        net, target, beta, optimizer=optax.adam(1e-2), num_steps=200, batch_size=256, key=jax.random.key(1),
        progress=False,
    )
    proposal = Autoregressive(net)
    algorithm = arjax.mcmc.independence(lambda x: -beta * target.energy(x), proposal)
    start = proposal.sample(jax.random.key(2), (64,))
    run = jax.jit(lambda k, x0: arjax.mcmc.run_chains(k, algorithm, x0, 400))
    chains, infos = run(jax.random.key(3), start)
    chain_means = np.asarray(jax.vmap(jax.vmap(target.energy))(chains[:, 100:])).mean(axis=1)
    sigma = chain_means.std(ddof=1) / np.sqrt(len(chain_means))
    assert abs(chain_means.mean() - exact) < 3 * sigma
    assert float(jnp.mean(infos.acceptance_rate)) > 0.2
