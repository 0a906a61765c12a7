"""``fit_free_energy``: learns, resumes bit-identically (a β ladder too, without recompiling), skips NaN steps."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import count_compiles

from arjax.estimators import free_energy
from arjax.nn import MADE, MeanField
from arjax.targets import EnergyTarget, IsingSquare
from arjax.train import NonFiniteError, annealed_beta, fit_free_energy, load_checkpoint


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


def test_a_beta_ladder_in_three_calls_equals_one_call_over_the_same_schedule(setup):
    """Rungs β = 0.2, 0.3, 0.4 of 10 steps with one annealing 1 - 0.9^{t+1} over the whole run (t counts on)."""
    net, target = setup
    kw = dict(optimizer=optax.adam(1e-2), batch_size=64, key=jax.random.key(1), anneal=0.9, progress=False)
    state, compiles = None, []
    for rung, beta in enumerate((0.2, 0.3, 0.4)):
        with count_compiles() as count:
            laddered, history, state = fit_free_energy(net, target, beta, num_steps=10 * (rung + 1), resume=state,
                                                       return_state=True, **kw)
        compiles.append(count[0])
    assert compiles[0] > 0 and compiles[1:] == [0, 0]  # the later rungs reuse the first one's compilation
    ladder = lambda t: jnp.where(t < 10, 0.2, jnp.where(t < 20, 0.3, 0.4))  # noqa: E731
    straight, straight_history = fit_free_energy(net, target, ladder, num_steps=30, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(laddered)):
        np.testing.assert_array_equal(a, b)
    for name in straight_history:
        np.testing.assert_array_equal(straight_history[name], history[name])
    t = np.arange(30)
    np.testing.assert_allclose(history["beta"], np.repeat([0.2, 0.3, 0.4], 10) * (1 - 0.9 ** (t + 1)), rtol=1e-6)
    assert state.step == 30 and state.history["step"].tolist() == t.tolist()


def test_resume_refuses_the_state_of_another_net_or_optimiser(setup):
    net, target = setup
    kw = dict(batch_size=8, num_steps=2, key=jax.random.key(1), progress=False)
    *_, state = fit_free_energy(MeanField(9, 2, key=jax.random.key(0)), target, 0.4, optimizer=optax.sgd(0.1),
                                return_state=True, **kw)
    with pytest.raises(ValueError, match="resume holds the state of another net"):
        fit_free_energy(net, target, 0.4, optimizer=optax.sgd(0.1), resume=state, **kw)
    with pytest.raises(ValueError, match="resume holds the state of another optimiser"):
        fit_free_energy(state.net, target, 0.4, optimizer=optax.adam(0.1), resume=state, **kw)
    with pytest.raises(TypeError, match="resume must be the TrainState"):
        fit_free_energy(net, target, 0.4, optimizer=optax.sgd(0.1), resume=(net, None), **kw)


# Energy NaN where all four spins are up: 1 in 16 samples of the initial net, so some steps but not all.
NAN_TARGET = EnergyTarget(lambda x: jnp.where(jnp.all(x == 1), jnp.nan, jnp.sum(x) * 1.0), 4, 2)
NAN_NET = MADE(num_positions=4, num_categories=2, width=8, depth=1, key=jax.random.key(0))
ADAM = optax.adam(0.1)


def _fit_nan(**kw):
    return fit_free_energy(NAN_NET, NAN_TARGET, 1.0, optimizer=ADAM, num_steps=20, batch_size=16, log_every=5,
                           key=jax.random.key(1), **kw)


def test_steps_with_a_nan_energy_are_skipped_counted_and_shown(capsys):
    trained, history = _fit_nan(progress=True)
    skipped = int(np.sum(~history["finite"]))
    assert 0 < skipped < 20 and np.isfinite(history["free_energy"][history["finite"]]).all()
    assert np.isnan(history["free_energy"][~history["finite"]]).all()
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(trained))
    log = capsys.readouterr().err  # not a terminal: plain lines, no carriage returns
    assert "\r" not in log and log.splitlines()[-1].startswith("step 20/20 F=")
    assert log.splitlines()[-1].endswith(f"skipped={skipped}") and len(log.splitlines()) <= 4


def test_consecutive_nan_energies_stop_the_run_and_keep_the_last_finite_state_on_disk(tmp_path):
    _, history = _fit_nan(progress=False)
    first = int(np.argmin(history["finite"]))  # the first step with a NaN energy
    path = tmp_path / "vfe.ckpt"
    message = rf"stopped at step {first + 1}: energy is NaN for \d+ of 16 samples at step {first}, the first of 1 "
    with pytest.raises(NonFiniteError, match=message) as caught:
        _fit_nan(progress=False, max_consecutive_skips=1, checkpoint=path)
    state = caught.value.state
    assert caught.value.first_step == first and state.step == first + 1 and caught.value.checkpoint == path
    for name in history:
        np.testing.assert_array_equal(state.history[name], history[name][: first + 1])
    (params, _, step), saved = load_checkpoint(path, (eqx.filter(NAN_NET, eqx.is_inexact_array), state.opt_state, 0))
    assert int(step) == first + 1 and not saved["finite"][-1]
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.net)):
        np.testing.assert_array_equal(a, b)  # the state after step first - 1, finite


def test_annealing_schedule():
    np.testing.assert_allclose(annealed_beta(2.0, 0.5, jnp.arange(3)), [1.0, 1.5, 1.75])
    np.testing.assert_allclose(annealed_beta(2.0, None, jnp.arange(3)), [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beta=0.0), "beta"),
        (dict(beta=lambda t: 1.0 - t), "beta must be finite and > 0 at every step, got 0.0 at step 1"),
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
