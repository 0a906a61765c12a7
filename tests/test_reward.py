"""KL-regularised reward loss and ``fit_reward`` against exact enumeration of all 2^6 sequences."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arjax import Autoregressive
from arjax.nn import MADE, MeanField
from arjax.objectives import reward_loss, score_function_surrogate
from arjax.testing import all_sequences
from arjax.train import NonFiniteError, fit_reward

N, K = 6, 2
COUPLINGS = jax.random.normal(jax.random.key(5), (N, N)) / 2


def reward(x):
    s = 2.0 * x - 1
    return s @ COUPLINGS @ s / 2 + s[0]


@pytest.fixture(scope="module")
def prior_net():
    return MADE(num_positions=N, num_categories=K, width=32, depth=2, key=jax.random.key(0))


@pytest.fixture(scope="module")
def q_net():
    return MADE(num_positions=N, num_categories=K, width=16, depth=1, key=jax.random.key(3))


def _exact_objective(q_net, prior_net, weight):
    """Σ_x q(x)[-r(x) + τ(ln q(x) - ln p(x))], or with ln p = 0 (no prior), by enumeration."""
    xs = all_sequences(N, K)
    log_q = Autoregressive(q_net).log_prob(xs)
    log_p = 0.0 if prior_net is None else Autoregressive(prior_net).log_prob(xs)
    return jnp.sum(jnp.exp(log_q) * (-jax.vmap(reward)(xs) + weight * (log_q - log_p)))


def _log_target(prior_net, weight):
    """ln of the normalised tilted distribution p(x) e^{r(x)/τ} (uniform p without a prior)."""
    xs = all_sequences(N, K)
    log_p = 0.0 if prior_net is None else Autoregressive(prior_net).log_prob(xs)
    log_t = log_p + jax.vmap(reward)(xs) / weight
    return log_t - jax.nn.logsumexp(log_t)


def _exact_kl(log_q, log_p):
    return float(jnp.sum(jnp.exp(log_q) * (log_q - log_p)))


def test_score_function_gradient_matches_the_exact_gradient(q_net, prior_net):
    cases = [(prior_net, "loo"), (None, "mean")]

    def grads(net, key):
        return [
            jax.grad(lambda n: reward_loss(n, key, reward_fn=reward, prior=prior, num_samples=2048, baseline=baseline,
                                           **({"kl_weight": 0.7} if prior is not None else {"temperature": 0.7})))(net)
            for prior, baseline in cases
        ]

    draws = jax.jit(jax.vmap(grads, (None, 0)))(q_net, jax.random.split(jax.random.key(2), 16))
    for (prior, _), draw in zip(cases, draws):
        exact = jax.grad(_exact_objective)(q_net, prior, 0.7)
        for g_exact, g_draws in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(draw)):
            stderr = g_draws.std(0) / np.sqrt(g_draws.shape[0])
            np.testing.assert_array_less(np.abs(g_draws.mean(0) - g_exact), 5 * stderr + 2e-3)
        assert max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(exact)) > 0.05


def test_value_and_reported_kl_match_enumeration(q_net, prior_net):
    xs = all_sequences(N, K)
    log_q = Autoregressive(q_net).log_prob(xs)
    log_p = Autoregressive(prior_net).log_prob(xs)
    exact_kl = _exact_kl(log_q, log_p)
    exact_reward = float(jnp.sum(jnp.exp(log_q) * jax.vmap(reward)(xs)))
    exact_objective = float(_exact_objective(q_net, prior_net, 0.7))

    def one(key):
        value, aux = reward_loss(q_net, key, reward_fn=reward, prior=prior_net, kl_weight=0.7, num_samples=4096,
                                 has_aux=True)
        # Against itself the sample-wise KL is exactly zero; without a prior, entropy and KL to uniform.
        _, same = reward_loss(prior_net, key, reward_fn=reward, prior=prior_net, num_samples=4096, has_aux=True)
        _, plain = reward_loss(prior_net, key, reward_fn=reward, num_samples=4096, has_aux=True)
        return value, aux, same.kl, plain

    values, aux, same_kl, plain = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 8))
    for estimate, truth in [(aux.kl, exact_kl), (aux.reward, exact_reward), (values, exact_objective)]:
        assert abs(float(estimate.mean()) - truth) < 5 * float(estimate.std()) / np.sqrt(8) + 1e-3
    np.testing.assert_allclose(values, aux.objective, rtol=1e-6)
    np.testing.assert_allclose(aux.objective, -aux.reward + 0.7 * aux.kl, rtol=1e-5, atol=1e-5)
    assert abs(float(aux.objective_stderr.mean()) - float(values.std())) < 0.5 * float(values.std()) + 1e-3
    assert float(jnp.abs(same_kl).max()) == 0.0
    exact_entropy = -float(jnp.sum(jnp.exp(log_p) * log_p))
    assert abs(float(plain.entropy.mean()) - exact_entropy) < 5 * float(plain.entropy.std()) / np.sqrt(8) + 1e-3
    # KL ≈ 0.05 is the difference of two float32 numbers near N ln 2 ≈ 5.5: allow a few of their ulps.
    ulp = float(np.spacing(np.float32(N * np.log(2))))
    np.testing.assert_allclose(plain.kl, N * np.log(2) - plain.entropy, rtol=1e-5, atol=4 * ulp)


def test_leave_one_out_is_the_rescaled_mean_baseline():
    log_q = jnp.array([-1.0, -2.0, -0.5, -3.0])
    f = jnp.array([0.3, -1.2, 2.0, 0.1])
    g_loo = jax.grad(lambda lq: score_function_surrogate(f, lq, baseline="loo"))(log_q)
    loo_baseline = (f.sum() - f) / 3
    np.testing.assert_allclose(g_loo, (f - loo_baseline) / 4, rtol=1e-5, atol=1e-7)
    g_mean = jax.grad(lambda lq: score_function_surrogate(f, lq, baseline="mean"))(log_q)
    np.testing.assert_allclose(g_mean, (f - f.mean()) / 4, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("with_prior", [True, False], ids=["prior", "entropy"])
def test_fit_reward_reaches_the_tilted_distribution(prior_net, with_prior):
    """With a prior, q starts at the prior's net; without one, T anneals 2 → 1 over the first 50 steps."""
    prior = prior_net if with_prior else None
    schedule = optax.linear_schedule(2.0, 1.0, 50)
    weights = dict(kl_weight=1.0) if with_prior else dict(temperature_schedule=schedule)
    start = prior_net
    trained, history = fit_reward(start, reward, prior=prior, optimizer=optax.adam(2e-2), num_steps=200,
                                  batch_size=256, key=jax.random.key(1), progress=False, log_every=50, **weights)
    log_t = _log_target(prior, 1.0)
    log_q = Autoregressive(trained).log_prob(all_sequences(N, K))
    before = _exact_kl(Autoregressive(start).log_prob(all_sequences(N, K)), log_t)
    assert before > 0.5
    assert _exact_kl(log_q, log_t) < 0.01
    assert history["objective"].shape == (200,) and history["finite"].all()
    if with_prior:
        np.testing.assert_array_equal(history["kl_weight"], 1.0)
    else:
        np.testing.assert_allclose(history["temperature"], [float(schedule(t)) for t in range(200)], rtol=1e-6)
    # At the optimum the objective is -τ ln Z_r (the "free energy" of the tilt).
    xs = all_sequences(N, K)
    log_p = 0.0 if prior is None else Autoregressive(prior_net).log_prob(xs)
    log_z = float(jax.nn.logsumexp(log_p + jax.vmap(reward)(xs)))
    assert float(np.mean(history["objective"][-50:])) == pytest.approx(-log_z, abs=0.05)


def test_nan_rewards_skip_the_steps_and_then_stop_the_run_saying_so(q_net):
    def nan_when_first_is_one(x):
        return jnp.where(x[0] == 1, jnp.nan, 1.0)

    net = MeanField(N, K, key=jax.random.key(0))
    x = Autoregressive(net).sample(jax.random.fold_in(jax.random.key(1), 0), (64,))  # the samples of step 0
    nans = int(np.sum(np.asarray(x)[:, 0] == 1))
    message = rf"reward is NaN for {nans} of 64 samples at step 0, the first of 4 "
    with pytest.raises(NonFiniteError, match=message) as e:
        fit_reward(net, nan_when_first_is_one, optimizer=optax.adam(0.1), num_steps=20, batch_size=64,
                   key=jax.random.key(1), progress=False, max_consecutive_skips=4)
    history = e.value.state.history
    assert not history["finite"].any() and np.isnan(history["objective"]).all() and len(history["step"]) == 4
    for a, b in zip(jax.tree_util.tree_leaves(net), jax.tree_util.tree_leaves(e.value.state.net)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "reward_fn, match",
    [(lambda x: x * 1.0, "reward_fn must map one sequence"), (lambda x: jnp.ones(1), "got output shape \\(1,\\)")],
)
def test_reward_fn_with_the_wrong_shape_is_rejected(q_net, reward_fn, match):
    with pytest.raises(ValueError, match=match):
        reward_loss(q_net, jax.random.key(0), reward_fn=reward_fn, num_samples=8)
    with pytest.raises(ValueError, match=match):
        fit_reward(q_net, reward_fn, optimizer=optax.adam(1e-2), num_steps=2, batch_size=8, key=jax.random.key(0),
                   progress=False)


@pytest.mark.parametrize("shape", [(N + 1, K), (N, K + 1)])
def test_prior_with_other_sizes_is_rejected(q_net, shape):
    prior = MeanField(*shape, key=jax.random.key(0))
    with pytest.raises(ValueError, match="prior and q_net disagree"):
        reward_loss(q_net, jax.random.key(0), reward_fn=reward, prior=prior, num_samples=8)
    with pytest.raises(ValueError, match="prior and q_net disagree"):
        fit_reward(q_net, reward, prior=Autoregressive(prior), optimizer=optax.adam(1e-2), num_steps=2,
                   batch_size=8, key=jax.random.key(0), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(kl_weight=0.5), "kl_weight=0.5 has no effect without a prior"),
        (dict(prior="prior", temperature=0.5), "temperature=0.5 has no effect with a prior"),
        (dict(prior="prior", kl_weight=float("nan")), "kl_weight"),
        (dict(num_samples=1), "num_samples"),
        (dict(baseline="median"), "baseline"),
    ],
)
def test_bad_arguments_are_rejected(q_net, prior_net, kwargs, match):
    kwargs = {"num_samples": 8, **kwargs}
    if kwargs.get("prior") == "prior":
        kwargs["prior"] = prior_net
    with pytest.raises(ValueError, match=match):
        reward_loss(q_net, jax.random.key(0), reward_fn=reward, **kwargs)
