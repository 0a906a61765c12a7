"""Variational free energy: the score-function gradient, Z2 symmetry and estimates vs enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TableNet

from arjax import Autoregressive
from arjax.estimators import free_energy
from arjax.nn import MADE, MeanField
from arjax.objectives import free_energy_loss, nll
from arjax.symmetry import symmetrized_log_prob
from arjax.targets import IsingSquare, SherringtonKirkpatrick
from arjax.testing import all_sequences

BETA = 0.4


def _exact_free_energy_of_q(net, target, beta, symmetry=None):
    xs = all_sequences(target.num_positions, 2)
    log_q = symmetrized_log_prob(net, xs, symmetry)
    energy = jax.vmap(target.energy)(xs)
    return jnp.sum(jnp.exp(log_q) * (energy + log_q / beta))


@pytest.mark.parametrize("symmetry", [None, "z2"])
@pytest.mark.parametrize(
    "target",
    [IsingSquare(3), SherringtonKirkpatrick(9, key=jax.random.key(4))],
    ids=["ising3x3", "sk9"],
)
def test_score_function_gradient_matches_the_exact_gradient(target, symmetry):
    net = MADE(num_positions=9, num_categories=2, width=12, depth=1, key=jax.random.key(1))
    exact = jax.grad(_exact_free_energy_of_q)(net, target, BETA, symmetry)
    grad = jax.jit(
        jax.vmap(jax.grad(lambda n, k: free_energy_loss(n, k, target, BETA, 4096, symmetry=symmetry)), (None, 0))
    )
    draws = grad(net, jax.random.split(jax.random.key(2), 16))
    for g_exact, g_draws in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(draws)):
        mean = g_draws.mean(0)
        stderr = g_draws.std(0) / np.sqrt(g_draws.shape[0])
        np.testing.assert_array_less(np.abs(mean - g_exact), 5 * stderr + 2e-3)
    assert max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(exact)) > 0.05


def test_loss_value_is_the_variational_free_energy():
    target = IsingSquare(3)
    net = MADE(num_positions=9, num_categories=2, width=12, depth=1, key=jax.random.key(1))
    exact = _exact_free_energy_of_q(net, target, BETA)
    values = jax.vmap(lambda k: free_energy_loss(net, k, target, BETA, 4096))(jax.random.split(jax.random.key(0), 8))
    assert abs(float(values.mean()) - float(exact)) < 5 * float(values.std()) / np.sqrt(8) + 1e-3


def test_z2_symmetrized_log_probs_normalise_and_are_symmetric():
    net = MADE(num_positions=8, num_categories=2, width=12, depth=2, key=jax.random.key(3))
    xs = all_sequences(8, 2)
    log_q = symmetrized_log_prob(net, xs, "z2")
    assert abs(float(jnp.exp(log_q).sum()) - 1) < 1e-5
    np.testing.assert_allclose(log_q, symmetrized_log_prob(net, 1 - xs, "z2"), atol=1e-6)


def test_variational_bound_holds_and_is_tight_for_the_exact_boltzmann_net():
    target = IsingSquare(3)
    exact_f = target.exact_free_energy(BETA)
    rough = free_energy(MeanField(9, 2, key=jax.random.key(0)), target, BETA, jax.random.key(1), 20_000)
    assert float(rough.variational) >= exact_f - 3 * float(rough.variational_stderr)
    assert float(rough.variational) - exact_f > 0.1

    xs = all_sequences(9, 2)
    boltzmann = TableNet(-BETA * jax.vmap(target.energy)(xs), 9, 2)
    perfect = free_energy(boltzmann, target, BETA, jax.random.key(1), 20_000)
    assert abs(float(perfect.variational) - exact_f) < 1e-3 * abs(exact_f)
    assert abs(float(perfect.importance) - exact_f) < 1e-4 * abs(exact_f)
    assert float(perfect.ess) > 0.999 * 20_000
    assert float(perfect.variational_stderr) < 1e-4
    assert perfect.per_site(9).variational == pytest.approx(float(perfect.variational) / 9)


def test_importance_weighted_estimate_converges_to_exact():
    target = IsingSquare(3)
    exact_f = target.exact_free_energy(BETA)
    net = MADE(num_positions=9, num_categories=2, width=12, depth=1, key=jax.random.key(1))
    est = free_energy(net, target, BETA, jax.random.key(5), 200_000)
    assert abs(float(est.importance) - exact_f) < 4 * float(est.importance_stderr) + 1e-3
    assert abs(float(est.variational) - exact_f) > abs(float(est.importance) - exact_f)


def test_nll_matches_enumeration():
    net = MADE(num_positions=4, num_categories=3, width=12, depth=1, key=jax.random.key(0))
    data = jnp.array([[0, 1, 2, 0], [2, 2, 1, 0], [1, 0, 0, 0]])
    log_p = Autoregressive(net).log_prob(all_sequences(4, 3))
    index = np.asarray(data) @ 3 ** np.arange(3, -1, -1)
    assert float(nll(net, data)) == pytest.approx(-float(log_p[index].mean()), abs=1e-5)


@pytest.mark.parametrize("beta, match", [(0.0, "beta"), (-1.0, "beta"), (float("nan"), "beta")])
def test_bad_beta_is_rejected(beta, match):
    net = MeanField(9, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        free_energy_loss(net, jax.random.key(0), IsingSquare(3), beta, 16)


def test_mismatched_sizes_and_symmetry_are_rejected():
    with pytest.raises(ValueError, match="net and target disagree"):
        free_energy_loss(MeanField(8, 2, key=jax.random.key(0)), jax.random.key(0), IsingSquare(3), 0.4, 16)
    with pytest.raises(ValueError, match="two categories"):
        free_energy_loss(
            MeanField(9, 3, key=jax.random.key(0)), jax.random.key(0), _ThreeStateTarget(), 0.4, 16, symmetry="z2"
        )
    with pytest.raises(ValueError, match="symmetry must be"):
        free_energy_loss(
            MeanField(9, 2, key=jax.random.key(0)), jax.random.key(0), IsingSquare(3), 0.4, 16, symmetry="z3"
        )


class _ThreeStateTarget:
    num_positions = 9
    num_categories = 3

    def energy(self, x):
        return jnp.sum(x).astype(jnp.float32)
