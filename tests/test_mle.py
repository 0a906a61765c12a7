"""``fit_mle``: memorises a small dataset to its entropy, resumes bit-identically, stops on non-finite updates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax

from arjax.nn import MADE, MeanField
from arjax.train import CheckpointError, NonFiniteError, evaluate_nll, fit_mle

PATTERNS = np.array([[0, 0, 0, 0, 1], [1, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0], [1, 1, 0, 0, 1]])
COUNTS = np.array([40, 24, 16, 12, 8])


@pytest.fixture(scope="module")
def data():
    rows = np.repeat(PATTERNS, COUNTS, axis=0)
    return jnp.asarray(np.random.default_rng(0).permutation(rows), jnp.int32)


@pytest.fixture(scope="module")
def net():
    return MADE(num_positions=5, num_categories=2, width=32, depth=1, key=jax.random.key(0))


def _fit(net, data, steps, **kw):
    kw.setdefault("log_every", 10)
    kw.setdefault("optimizer", optax.adam(2e-2))
    return fit_mle(net, data, batch_size=20, num_steps=steps, key=jax.random.key(1), progress=False, **kw)


def test_training_reaches_the_entropy_of_the_data(net, data):
    p = COUNTS / COUNTS.sum()
    entropy = -np.sum(p * np.log(p))
    trained, history = _fit(net, data, 1500, log_every=500, eval_data=data)
    assert evaluate_nll(trained, data) - entropy < 1e-2
    assert evaluate_nll(net, data) - entropy > 1.0
    np.testing.assert_array_equal(history["eval_step"], [500, 1000, 1500])
    np.testing.assert_allclose(history["eval_bits_per_token"], history["eval_nll"] / (5 * np.log(2)), rtol=1e-6)


def test_mean_field_nll_equals_its_closed_form(data):
    net = MeanField(num_positions=5, num_categories=2, init_scale=1.0, key=jax.random.key(3))
    log_p = log_softmax(np.asarray(net.logits, np.float64), axis=-1)
    x = np.asarray(data)
    closed_form = -np.mean(log_p[np.arange(5), x].sum(axis=-1))
    np.testing.assert_allclose(evaluate_nll(net, data, batch_size=7), closed_form, rtol=1e-5)


def test_an_epoch_visits_every_sequence_once(net, data):
    _, history = fit_mle(net, data, optimizer=optax.sgd(0.0), batch_size=data.shape[0], num_epochs=2,
                         key=jax.random.key(1), progress=False)
    np.testing.assert_allclose(history["nll"], evaluate_nll(net, data), rtol=1e-5)
    _, history = fit_mle(net, data, optimizer=optax.sgd(0.0), batch_size=30, num_epochs=3, key=jax.random.key(1),
                         progress=False)
    assert history["nll"].shape == (3 * (100 // 30),)


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(net, data, tmp_path):
    path = tmp_path / "ckpt" / "mle.ckpt"
    straight, straight_history = _fit(net, data, 40, eval_data=data[:30])
    _fit(net, data, 20, eval_data=data[:30], checkpoint=path)
    resumed, resumed_history = _fit(net, data, 40, eval_data=data[:30], checkpoint=path)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in straight_history:
        np.testing.assert_array_equal(straight_history[name], resumed_history[name])
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_checkpoint_is_never_loaded(net, data, tmp_path, damage):
    path = tmp_path / "mle.ckpt"
    _fit(net, data, 10, checkpoint=path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = bytearray(b"not a checkpoint")
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="mle.ckpt"):
        _fit(net, data, 20, checkpoint=path)


def test_a_checkpoint_of_the_first_format_is_refused_with_the_reason(net, data, tmp_path):
    path = tmp_path / "mle.ckpt"
    path.write_bytes(b"arjax-checkpoint-v1\n" + bytes(64))
    with pytest.raises(CheckpointError, match="format-v1 checkpoint of an earlier arjax"):
        _fit(net, data, 20, checkpoint=path)


@pytest.mark.parametrize(
    "learning_rate, message",
    [
        (float("nan"), r"the updated parameters are NaN in 682 of 682 entries \(with a finite loss and gradient: "
                       "check the learning rate"),
        (float("inf"), r"the updated parameters are NaN or infinite in 682 of 682 entries"),  # 0 · inf = NaN
    ],
    ids=["nan", "inf"],
)
def test_a_non_finite_learning_rate_stops_the_run_with_the_parameters_untouched(net, data, learning_rate, message):
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(net)) == 682
    with pytest.raises(NonFiniteError, match=r"fit_mle stopped at step 3: " + message + ".* at step 0, the first of 3 "
                                             ".*The parameters and optimiser state are the initial ones") as caught:
        _fit(net, data, 50, optimizer=optax.sgd(learning_rate), max_consecutive_skips=3)
    for a, b in zip(jax.tree_util.tree_leaves(net), jax.tree_util.tree_leaves(caught.value.state.net)):
        np.testing.assert_array_equal(a, b)
    assert caught.value.state.history["finite"].tolist() == [False] * 3


def test_a_learning_rate_schedule_that_blows_up_stops_the_run_at_its_last_finite_state(net, data):
    growing = optax.exponential_decay(1e-2, transition_steps=1, decay_rate=10.0)  # 1e-2 · 10^t
    with pytest.raises(NonFiniteError, match="fit_mle stopped at step") as caught:
        _fit(net, data, 60, optimizer=optax.sgd(growing), max_consecutive_skips=3)
    first, state = caught.value.first_step, caught.value.state
    assert 0 < first < 50 and f"at step {first}, the first of 3 consecutive" in str(caught.value)
    assert state.history["finite"].tolist() == [True] * first + [False] * 3 and state.step == first + 3
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(state.net))


def test_a_minibatch_the_model_cannot_produce_stops_the_run_naming_its_rows(net, data):
    allowed = jnp.ones((5, 2), bool).at[2, 1].set(False)  # token 1 never at position 2
    first_batch = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(1), 0), 100))[:20]
    bad = sorted(int(r) for r in first_batch if data[r, 2] == 1)
    message = rf"the log-likelihood is -inf for {len(bad)} of 20 sequences of the minibatch \(data rows {bad[:10]}\)"
    with pytest.raises(NonFiniteError, match=message.replace("[", r"\[").replace("]", r"\]") + " at step 0"):
        _fit(net, data, 20, allowed=allowed, max_consecutive_skips=1)


def test_a_checkpoint_of_another_model_is_refused(net, data, tmp_path):
    path = tmp_path / "mle.ckpt"
    _fit(net, data, 10, checkpoint=path)
    other = MADE(num_positions=5, num_categories=2, width=16, depth=1, key=jax.random.key(0))
    with pytest.raises(CheckpointError, match="does not match"):
        _fit(other, data, 20, checkpoint=path)


def test_conditional_model_learns_from_context():
    c = np.random.default_rng(1).integers(0, 2, 64)
    data = jnp.asarray(np.stack([c, 1 - c, c], axis=1), jnp.int32)
    context = jax.nn.one_hot(c, 2)
    net = MADE(num_positions=3, num_categories=2, width=16, depth=1, context_size=2, key=jax.random.key(0))
    trained, _ = fit_mle(net, data, context=context, optimizer=optax.adam(5e-2), batch_size=16, num_steps=300,
                         key=jax.random.key(1), progress=False, log_every=300)
    assert evaluate_nll(trained, data, context=context) < 0.05
    with pytest.raises(ValueError, match="context is required"):
        fit_mle(net, data, optimizer=optax.adam(1e-2), batch_size=8, num_steps=1, key=jax.random.key(0))


def test_callback_can_stop_the_run(net, data):
    seen = []
    _, history = _fit(net, data, 100, callback=lambda step, model, row: seen.append(step) or step >= 30)
    assert seen == [10, 20, 30] and history["nll"].shape == (30,)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros((4, 5), np.float32), TypeError, "integer tokens"),
        (np.full((4, 5), 2), ValueError, r"data\[0, 0\] = 2"),
        (np.array([[0, 1, 0, 1, -1]]), ValueError, r"data\[0, 4\] = -1"),
        (np.zeros((4, 6), np.int32), ValueError, r"shape \(num_sequences, 5\)"),
        (np.zeros((0, 5), np.int32), ValueError, "empty"),
        (np.zeros(5, np.int32), ValueError, r"shape \(num_sequences, 5\)"),
    ],
)
def test_bad_data_is_rejected_before_training(net, bad, error, match):
    with pytest.raises(error, match=match):
        fit_mle(net, bad, optimizer=optax.adam(1e-2), batch_size=1, num_steps=1, key=jax.random.key(0))
    with pytest.raises(error, match=match.replace("data", "eval_data", 1) if "data" in match else match):
        fit_mle(net, np.zeros((4, 5), np.int32), eval_data=bad, optimizer=optax.adam(1e-2), batch_size=1,
                num_steps=1, key=jax.random.key(0))


def test_bad_settings_are_rejected(net, data):
    kw = dict(optimizer=optax.adam(1e-2), key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="exactly one of num_steps and num_epochs"):
        fit_mle(net, data, batch_size=4, **kw)
    with pytest.raises(ValueError, match="exactly one of num_steps and num_epochs"):
        fit_mle(net, data, batch_size=4, num_steps=3, num_epochs=1, **kw)
    with pytest.raises(ValueError, match="batch_size=101 exceeds"):
        fit_mle(net, data, batch_size=101, num_steps=3, **kw)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        fit_mle(net, data, batch_size=0, num_steps=3, **kw)
