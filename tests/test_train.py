"""``fit_free_energy``: learns, resumes bit-identically, writes checkpoints atomically, survives NaNs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arjax.estimators import free_energy
from arjax.nn import MADE
from arjax.targets import EnergyTarget, IsingSquare
from arjax.train import annealed_beta, fit_free_energy


def _fit(net, target, steps, **kw):
    return fit_free_energy(net, target, 0.4, optimizer=optax.adam(1e-2), num_steps=steps, batch_size=256,
                           key=jax.random.key(1), progress=False, **kw)


@pytest.fixture(scope="module")
def setup():
    return MADE(num_positions=9, num_categories=2, width=24, depth=1, key=jax.random.key(0)), IsingSquare(3)


def test_training_approaches_the_exact_free_energy(setup):
    net, target = setup
    exact = target.exact_free_energy(0.4)
    before = free_energy(net, target, 0.4, jax.random.key(9), 20_000)
    trained, history = _fit(net, target, 150, symmetry="z2", clip_grad=1.0, anneal=0.95)
    after = free_energy(trained, target, 0.4, jax.random.key(9), 20_000, symmetry="z2")
    assert (float(after.variational) - exact) / abs(exact) < 3e-3
    assert float(after.variational) - exact < 0.1 * (float(before.variational) - exact)
    assert history["free_energy"].shape == (150,) and np.all(np.diff(history["step"]) == 1)
    np.testing.assert_allclose(history["beta"][:3], 0.4 * (1 - 0.95 ** np.arange(1, 4)), rtol=1e-6)


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(setup, tmp_path):
    net, target = setup
    path = tmp_path / "run" / "vfe.eqx"
    straight, straight_history = _fit(net, target, 20, log_every=10)
    _, interrupted_history = _fit(net, target, 10, log_every=10, checkpoint=path)
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    assert interrupted_history["free_energy"].shape == (10,)
    resumed, resumed_history = _fit(net, target, 20, log_every=10, checkpoint=path)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    for name in straight_history:
        np.testing.assert_array_equal(straight_history[name], resumed_history[name])


def test_non_finite_loss_skips_the_update_instead_of_corrupting_parameters():
    target = EnergyTarget(_nan_when_first_spin_up, num_positions=4, num_categories=2)
    net = MADE(num_positions=4, num_categories=2, width=8, depth=1, key=jax.random.key(0))
    trained, history = fit_free_energy(net, target, 1.0, optimizer=optax.adam(0.1), num_steps=5, batch_size=64,
                                       key=jax.random.key(1), progress=False)
    assert np.isnan(history["free_energy"]).all()
    for a, b in zip(jax.tree_util.tree_leaves(net), jax.tree_util.tree_leaves(trained)):
        np.testing.assert_array_equal(a, b)


def _nan_when_first_spin_up(x):
    return jnp.where(x[0] == 1, jnp.nan, jnp.sum(x).astype(jnp.float32))


def test_annealing_schedule():
    np.testing.assert_allclose(annealed_beta(2.0, 0.5, jnp.arange(3)), [1.0, 1.5, 1.75])
    np.testing.assert_allclose(annealed_beta(2.0, None, jnp.arange(3)), [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beta=0.0), "beta"),
        (dict(num_steps=0), "num_steps"),
        (dict(batch_size=1), "batch_size"),
        (dict(anneal=1.0), "anneal"),
        (dict(clip_grad=-1.0), "clip_grad"),
        (dict(symmetry="z3"), "symmetry"),
    ],
)
def test_bad_arguments_are_rejected(setup, kwargs, match):
    net, target = setup
    args = dict(beta=0.4, optimizer=optax.adam(1e-2), num_steps=5, batch_size=8, key=jax.random.key(0)) | kwargs
    with pytest.raises(ValueError, match=match):
        fit_free_energy(net, target, **args)
