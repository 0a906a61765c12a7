"""Inverse design on the mixed model: the skeleton view is the exact skeleton marginal, cloze MCMC over a double
perovskite template reaches the exactly enumerated conditional, completed geometry is an exact conditional sample."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats
from scipy.special import logsumexp

import arjax
from arjax.crystal import CrystalEncoder, CrystalTransformer
from arjax.crystal.design import SkeletonNet, complete_geometry, skeleton_template
from arjax.crystal.skeleton import encoder_skeleton_log_prob


def _net(enc, key=0, scale=2.0):
    net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(key))
    return jax.tree.map(lambda w: scale * w if isinstance(w, jax.Array) and w.ndim >= 2 else w, net)


ENCODER = CrystalEncoder(space_groups=[221, 225], elements=["O", "Ti", "Sr", "Ba"], max_sites=4, max_atoms=40)


@pytest.mark.slow  # long chains; cloze exactness is checked by test_mcmc
def test_cloze_chains_over_a_double_perovskite_template_reach_the_exact_element_conditional():
    net = _net(ENCODER)
    view = arjax.Autoregressive(SkeletonNet(net), allowed=ENCODER.allowed)
    template, holes = skeleton_template(ENCODER, "225-a-?-b-?-c-?-e-O")  # A2BB'O6: B 4a, B' 4b, A 8c, O 24e
    combos = np.array(list(itertools.product(range(len(ENCODER.elements)), repeat=3))) + ENCODER.element_start
    xs = np.repeat(template[None], len(combos), axis=0)
    xs[:, holes] = combos
    log_p = np.asarray(view.log_prob(jnp.asarray(xs)), np.float64)
    exact = np.exp(log_p - logsumexp(log_p))
    # the skeleton view is the full model's exact skeleton marginal
    full = np.zeros((len(xs), ENCODER.num_positions))
    full[:, : ENCODER.coordinate_start] = xs
    full[:, ENCODER.lattice_start :] = [1.0, 1.0, 90.0, 90.0, 90.0, 1.0]
    np.testing.assert_allclose(encoder_skeleton_log_prob(net, full), log_p, atol=1e-4)

    algorithm = arjax.mcmc.cloze(view.log_prob, view, positions=holes, mode="mh")

    def chain(key):
        def step(state, k):
            state, _ = algorithm.step(k, state)
            return state, state.position[holes]

        return jax.lax.scan(step, algorithm.init(jnp.asarray(template)), jax.random.split(key, 120))[1][20:]

    draws = np.asarray(jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(1), 64))).reshape(-1, 3)
    index = {tuple(c): k for k, c in enumerate(combos.tolist())}
    freq = np.bincount([index[tuple(d)] for d in draws.tolist()], minlength=len(combos)) / len(draws)
    assert 0.5 * np.abs(freq - exact).sum() < 0.06


@pytest.mark.slow  # 400 completions; the Rosenblatt test of test_continuous covers conditional sampling
def test_completed_geometry_keeps_the_skeleton_and_is_an_exact_conditional_sample():
    net = _net(ENCODER, scale=1.0)
    template, _ = skeleton_template(ENCODER, "225-a-Ba-b-Ti-c-Sr-e-O")
    x = np.asarray(complete_geometry(net, np.repeat(template[None], 400, axis=0), key=jax.random.key(2)))
    assert np.all(x[:, : ENCODER.coordinate_start] == template)
    assert [(s.letter, s.element) for s in ENCODER.decode(x[0]).sites] == [("a", "Ba"), ("b", "Ti"), ("c", "Sr"),
                                                                           ("e", "O")]  # fmt: skip
    # Rosenblatt: the conditional CDFs of the free slots (24e's x, the cubic a) are uniform for exact samples.
    u = np.asarray(arjax.Autoregressive(net, allowed=ENCODER.allowed).conditional_cdfs(jnp.asarray(x, jnp.float32)))
    free = [ENCODER.coordinate_start + 9, ENCODER.scale_position]
    for i in free:
        assert stats.kstest(u[:, i], "uniform").pvalue > 1e-3
    assert len(set(np.round(x[:, free[0]], 6))) > 390  # a continuous coordinate
    assert np.all(x[:, ENCODER.coordinate_start : ENCODER.coordinate_start + 9] == 0.0)  # a, b, c: fixed points


def test_templates_with_unknown_parts_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="space group 225 has no Wyckoff letter 'z'"):
        skeleton_template(ENCODER, "225-z-?")
    with pytest.raises(ValueError, match="element 'Xe' is not in the vocabulary"):
        skeleton_template(ENCODER, "225-a-Xe")


def test_validity_reward_penalises_exactly_the_invalid_crystals_inside_jit_and_vmap():
    from arjax.crystal import metrics, to_structure
    from arjax.crystal.design import validity_reward

    reward = validity_reward(ENCODER, penalty=3.0)
    x = np.asarray(arjax.Autoregressive(_net(ENCODER), allowed=ENCODER.allowed).sample(jax.random.key(0), (64,)))
    valid = np.array([metrics.structurally_valid(to_structure(ENCODER.decode(row))) for row in x])
    assert 0 < valid.sum() < len(x)  # the untrained net draws both kinds
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(reward))(jnp.asarray(x))), np.where(valid, 0.0, -3.0))
    assert float(reward(ENCODER.encode("221-a-Ti-b-Sr-d-O-X-3.905"))) == 0.0
    assert float(reward(ENCODER.encode("221-a-Ti-b-Sr-d-O-X-0.9"))) == -3.0  # Ti-O 0.45 Å
    with pytest.raises(ValueError, match="penalty must be"):
        validity_reward(ENCODER, penalty=0.0)


@pytest.mark.slow
def test_fit_reward_fine_tunes_the_mixed_crystal_model_toward_validity():
    from arjax.crystal.design import validity_reward
    from arjax.train import fit_reward

    net = _net(ENCODER)
    prior = arjax.Autoregressive(net, allowed=ENCODER.allowed)
    tuned, history = fit_reward(net, validity_reward(ENCODER), prior=prior, optimizer=optax.adam(1e-3), num_steps=4,
                                batch_size=16, key=jax.random.key(1), log_every=2, progress=False)  # fmt: skip
    assert history["finite"].all() and history["kl"][0] == pytest.approx(0.0, abs=1e-5)  # q starts at the prior
    assert set(np.round(history["reward"] * 16 / -10.0, 6)) <= set(range(17))  # -10 per invalid sample of 16
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), eqx.filter(tuned, eqx.is_array),
                                         eqx.filter(net, eqx.is_array)))  # fmt: skip
    assert max(moved) > 0


@pytest.mark.slow
def test_frozen_skeleton_keeps_the_skeleton_conditionals_and_samples_alike_cached_or_not():
    from arjax.crystal.design import FrozenSkeleton
    from arjax.sampling import sample_and_log_prob

    base, other = _net(ENCODER, key=0), _net(ENCODER, key=3)
    frozen = FrozenSkeleton(base, other)
    m = ENCODER.coordinate_start
    x = jnp.asarray(ENCODER.encode("221-a-Ti-b-Sr-d-O-X-3.905"), jnp.float32)
    np.testing.assert_array_equal(frozen(x)[:m], base(x)[:m])
    np.testing.assert_array_equal(frozen(x)[m:], other(x)[m:])
    log_prob = arjax.Autoregressive(frozen, allowed=ENCODER.allowed).log_prob
    grads = eqx.filter_grad(lambda net: arjax.Autoregressive(net, allowed=ENCODER.allowed).log_prob(x))(frozen)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads.skeleton))
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads.geometry)) > 0
    key = jax.random.key(2)
    fast, fast_lp = sample_and_log_prob(frozen, key, (8,), allowed=ENCODER.allowed, cached=True)
    slow, slow_lp = sample_and_log_prob(frozen, key, (8,), allowed=ENCODER.allowed, cached=False)
    np.testing.assert_array_equal(fast[:, :m], slow[:, :m])
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    np.testing.assert_allclose(fast_lp, log_prob(fast), rtol=1e-4, atol=1e-3)
    with pytest.raises(TypeError, match="geometry must be a CrystalTransformer"):
        FrozenSkeleton(base, SkeletonNet(base))


def test_sample_valid_keeps_exactly_the_valid_draws_in_order_and_counts_them():
    from arjax.crystal.design import sample_valid, structurally_valid_rows

    model = arjax.Autoregressive(_net(ENCODER), allowed=ENCODER.allowed)
    out = sample_valid(model, jax.random.key(4), 40, batch_size=16)
    drawn = np.concatenate([np.asarray(model.sample(jax.random.fold_in(jax.random.key(4), b), (16,)))
                            for b in range(out.drawn // 16)])  # fmt: skip
    valid = structurally_valid_rows(ENCODER, drawn)
    assert 0 < out.accepted < out.drawn and out.accepted == valid.sum() >= 40  # the untrained net draws both kinds
    np.testing.assert_array_equal(out.x, drawn[valid][:40])
    np.testing.assert_array_equal(sample_valid(model, jax.random.key(4), 40, batch_size=16).x, out.x)
    with pytest.raises(RuntimeError, match="fewer than num_samples=3"):
        sample_valid(model, jax.random.key(4), 3, batch_size=4, max_batches=2, min_volume=1e9)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        sample_valid(model, jax.random.key(4), 3, batch_size=0)
    with pytest.raises(TypeError, match="crystal net with an encoder"):
        sample_valid(arjax.Autoregressive(SkeletonNet(_net(ENCODER))), jax.random.key(4), 3)
