"""The pathwise reward gradient on nets with real-valued positions: unbiased against quadrature, in either order."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arjax import Autoregressive
from arjax.families import Categorical, GaussianMixture, VonMisesMixture
from arjax.nn import MADE
from arjax.objectives import reward_loss
from arjax.train import fit_reward

TAU = 0.7
GRIDS = {  # rectangle rule: exact to float precision for these smooth (periodic or fast-decaying) integrands
    "GaussianMixture": np.linspace(-12.0, 12.0, 6001),
    "VonMisesMixture": (np.arange(2000) + 0.5) / 2000,
}
REAL = {"GaussianMixture": GaussianMixture(2), "VonMisesMixture": VonMisesMixture(2)}


def reward(x, token, family):
    real, d = x[1 - token], x[token]
    if family == "VonMisesMixture":  # periodic on the circle, as the pathwise rule needs
        return jnp.cos(2 * jnp.pi * (real - 0.3 * d)) + 0.5 * jnp.sin(4 * jnp.pi * real)
    return -((real - 0.5 - d) ** 2)


def _flat(tree):
    return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))])


def _exact_objective(net, prior, token, family):
    """E_q[-r + τ(ln q - ln p)]: a sum over the token and a fine grid over the real value."""
    grid = jnp.asarray(GRIDS[family], jnp.float32)
    step = float(GRIDS[family][1] - GRIDS[family][0])
    total = 0.0
    for d in (0.0, 1.0):
        column = jnp.full_like(grid, d)
        x = jnp.stack([column, grid], -1) if token == 0 else jnp.stack([grid, column], -1)
        log_q, log_p = Autoregressive(net).log_prob(x), Autoregressive(prior).log_prob(x)
        f = -jax.vmap(lambda v: reward(v, token, family))(x) + TAU * (log_q - log_p)
        total = total + step * jnp.sum(jnp.exp(log_q) * f)
    return total


@pytest.mark.parametrize("family", sorted(REAL))
@pytest.mark.parametrize("token", [0, 1], ids=["token-then-real", "real-then-token"])
@pytest.mark.parametrize("gradient", ["pathwise", "score"])
def test_reward_gradient_with_a_real_mixture_position_matches_quadrature(token, gradient, family):
    families = (Categorical(2), REAL[family]) if token == 0 else (REAL[family], Categorical(2))
    q = MADE(num_positions=2, families=families, key=jax.random.key(0))
    prior = MADE(num_positions=2, families=families, key=jax.random.key(1))
    exact_value, exact_grad = eqx.filter_jit(eqx.filter_value_and_grad(_exact_objective))(q, prior, token, family)

    def loss(net, key):
        return reward_loss(net, key, reward_fn=lambda x: reward(x, token, family), prior=prior, kl_weight=TAU,
                           num_samples=40_000, gradient=gradient)  # fmt: skip

    value, grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))(q, jax.random.key(7))
    assert abs(float(value) - float(exact_value)) < 0.05 * abs(float(exact_value)) + 0.01
    error = jnp.linalg.norm(_flat(grad) - _flat(exact_grad)) / jnp.linalg.norm(_flat(exact_grad))
    assert float(error) < 0.08, (gradient, float(error))  # at 40k samples the circular pathwise error is 0.01-0.08


def test_pathwise_gradient_has_lower_variance_than_the_score_function_one():
    families = (Categorical(2), GaussianMixture(2))
    q = MADE(num_positions=2, families=families, key=jax.random.key(0))
    prior = MADE(num_positions=2, families=families, key=jax.random.key(1))

    def spread(gradient):
        def loss(net, key):
            return reward_loss(net, key, reward_fn=lambda x: reward(x, 0, "GaussianMixture"), prior=prior,
                               kl_weight=TAU, num_samples=256, gradient=gradient)  # fmt: skip

        grads = [_flat(eqx.filter_grad(loss)(q, jax.random.key(k))) for k in range(16)]
        return float(jnp.sum(jnp.var(jnp.stack(grads), axis=0)))

    assert spread("pathwise") < spread("score")


def test_fit_reward_pathwise_moves_a_gaussian_to_the_tilted_target():
    # prior N(0, 1) (a fresh MADE's first position), reward -(x - 2)² / 2 with τ = 1: target N(1, 1/2)
    q = MADE(num_positions=1, families=GaussianMixture(1), key=jax.random.key(0))
    net, history = fit_reward(q, lambda x: -((x[0] - 2.0) ** 2) / 2, prior=q, optimizer=optax.adam(3e-2),
                              num_steps=300, batch_size=256, key=jax.random.key(1), gradient="pathwise",
                              progress=False)  # fmt: skip
    x = Autoregressive(net).sample(jax.random.key(2), (20_000,))[:, 0]
    assert abs(float(jnp.mean(x)) - 1.0) < 0.06 and abs(float(jnp.var(x)) - 0.5) < 0.06
    assert bool(history["finite"].all())


def test_pathwise_gradient_rejects_token_only_nets_and_unknown_names():
    tokens = MADE(num_positions=3, num_categories=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="pathwise"):
        reward_loss(tokens, jax.random.key(1), reward_fn=lambda x: jnp.sum(x) * 1.0, num_samples=8,
                    gradient="pathwise")  # fmt: skip
    for call in (
        lambda: reward_loss(tokens, jax.random.key(1), reward_fn=lambda x: jnp.sum(x) * 1.0, num_samples=8,
                            gradient="reparam"),
        lambda: fit_reward(tokens, lambda x: jnp.sum(x) * 1.0, optimizer=optax.sgd(0.1), num_steps=1, batch_size=8,
                           key=jax.random.key(1), gradient="reparam", progress=False),
    ):  # fmt: skip
        with pytest.raises(ValueError, match="gradient must be"):
            call()
