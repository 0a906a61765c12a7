"""The pathwise reward gradient on nets with real-valued positions: unbiased against quadrature, in either order."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arjax import Autoregressive
from arjax.families import Categorical, GaussianMixture
from arjax.nn import MADE
from arjax.objectives import reward_loss
from arjax.train import fit_reward

TAU = 0.7
NODES, WEIGHTS = np.polynomial.hermite.hermgauss(80)


def reward(x, token):
    return -((x[1 - token] - 0.5 - x[token]) ** 2)


def _flat(tree):
    return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))])


def _exact_objective(net, prior, token):
    """E_q[-r + τ(ln q - ln p)] by summing the token and Gauss–Hermite quadrature over the real value."""
    q, p = Autoregressive(net), Autoregressive(prior)
    total = 0.0
    for d in (0.0, 1.0):
        if token == 0:  # x = (d, c): c | d ~ N(m_d, s_d²)
            params = q.conditional_params(jnp.array([d, 0.0]))[1, :3]
        else:  # x = (c, d): c ~ N(m, s²), then d | c
            params = q.conditional_params(jnp.array([0.0, d]))[0, :3]
        _, loc, scale = GaussianMixture(1).unpack(params)
        c = loc[0] + jnp.sqrt(2.0) * scale[0] * NODES
        x = jnp.stack([jnp.full_like(c, d), c], -1) if token == 0 else jnp.stack([c, jnp.full_like(c, d)], -1)
        log_q, log_p = q.log_prob(x), p.log_prob(x)
        log_density = jnp.log(jnp.sqrt(2 * jnp.pi) * scale[0]) + NODES**2  # 1 / N(c; m, s) at the nodes
        f = -jax.vmap(lambda v: reward(v, token))(x) + TAU * (log_q - log_p)
        total = total + jnp.sum(WEIGHTS / jnp.sqrt(jnp.pi) * jnp.exp(log_q + log_density) * f)
    return total


@pytest.mark.parametrize("token", [0, 1], ids=["token-then-real", "real-then-token"])
@pytest.mark.parametrize("gradient", ["pathwise", "score"])
def test_reward_gradient_with_a_real_position_matches_quadrature(token, gradient):
    families = (Categorical(2), GaussianMixture(1)) if token == 0 else (GaussianMixture(1), Categorical(2))
    q = MADE(num_positions=2, families=families, key=jax.random.key(0))
    prior = MADE(num_positions=2, families=families, key=jax.random.key(1))
    exact_value, exact_grad = eqx.filter_value_and_grad(_exact_objective)(q, prior, token)

    def loss(net, key):
        return reward_loss(net, key, reward_fn=lambda x: reward(x, token), prior=prior, kl_weight=TAU,
                           num_samples=40_000, gradient=gradient)  # fmt: skip

    value, grad = eqx.filter_value_and_grad(loss)(q, jax.random.key(7))
    assert abs(float(value) - float(exact_value)) < 0.05 * abs(float(exact_value))
    error = jnp.linalg.norm(_flat(grad) - _flat(exact_grad)) / jnp.linalg.norm(_flat(exact_grad))
    assert float(error) < 0.04, (gradient, float(error))


def test_pathwise_gradient_has_lower_variance_than_the_score_function_one():
    families = (Categorical(2), GaussianMixture(1))
    q = MADE(num_positions=2, families=families, key=jax.random.key(0))
    prior = MADE(num_positions=2, families=families, key=jax.random.key(1))

    def spread(gradient):
        grads = [
            _flat(eqx.filter_grad(lambda n: reward_loss(n, jax.random.key(k), reward_fn=lambda x: reward(x, 0),
                                                        prior=prior, kl_weight=TAU, num_samples=256,
                                                        gradient=gradient))(q))
            for k in range(16)
        ]  # fmt: skip
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
