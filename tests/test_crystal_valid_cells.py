"""Cells valid by construction: the angle ``γ`` is drawn on the interval where ``α, β, γ`` close a cell, and the
scale ``a`` comes last and is cut below at the smallest value that keeps every pair of atoms ``min_separation``
apart, so every drawn crystal is structurally valid and the model stays exactly normalised (the families, the
bound, the model)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import arjax
from arjax.crystal import metrics
from arjax.crystal.design import structurally_valid_rows
from arjax.crystal.encoder import CrystalEncoder
from arjax.crystal.errors import CrystalError
from arjax.crystal.families import IntervalLogitNormalMixture, TruncatedLogNormalMixture
from arjax.crystal.geometry import atom_positions, lattice_vectors, minimum_scale, reduced_basis
from arjax.crystal.net import CrystalTransformer, _log_lower
from arjax.crystal.structure import to_structure

FAMILY = TruncatedLogNormalMixture(3)
ANGLE = IntervalLogitNormalMixture(3, low=0.0, high=180.0)
# Triclinic 2 (three free angles, skewed cells from an untrained net), monoclinic 12, hexagonal, cubic.
VOCABULARY = dict(space_groups=[2, 12, 194, 195, 225], elements=["O", "Na", "Cl"], max_sites=3, max_atoms=24)


def _params(key, log_lower):
    return (1.5 * jax.random.normal(key, (FAMILY.num_params,))).at[0].set(log_lower)


def _net(encoder, key=0, scale=3.0):
    net = CrystalTransformer(encoder, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(key))
    return jax.tree.map(lambda w: scale * w if isinstance(w, jax.Array) and w.ndim >= 2 else w, net)


# --- the family -----------------------------------------------------------------------------------


@pytest.mark.parametrize("log_lower", [-40.0, -1.0, 0.7, 3.0])
def test_cut_density_integrates_to_one_and_its_cdf_is_its_integral(log_lower):
    for key in jax.random.split(jax.random.key(0), 3):
        params = _params(key, log_lower)
        u = np.linspace(max(log_lower, -16.0), 16.0, 20001)
        x = np.exp(u)
        density = np.exp(np.asarray(jax.vmap(FAMILY.log_prob, (None, 0))(params, jnp.asarray(x)), float))
        assert integrate.trapezoid(density * x, u) == pytest.approx(1.0, abs=2e-4)
        cdf = np.asarray(jax.vmap(FAMILY.cdf, (None, 0))(params, jnp.asarray(x[::1000])), float)
        running = integrate.cumulative_trapezoid(density * x, u, initial=0.0)[::1000]
        np.testing.assert_allclose(cdf, running, atol=2e-4)
        below = np.exp(log_lower) * np.array([0.5, 0.999])
        assert np.all(np.isneginf(np.asarray(jax.vmap(FAMILY.log_prob, (None, 0))(params, jnp.asarray(below)))))


def _draws_that_follow_the_cdf_and_numpyro(family, params, key, numpyro_key):
    """20000 draws of ``family``, checked against its CDF (KS) and its NumPyro twin (log-density, KS)."""
    draws = jax.vmap(family.sample, (None, 0))(params, jax.random.uniform(key, (20000, 2)))
    cdf = jax.vmap(family.cdf, (None, 0))
    assert stats.kstest(np.asarray(draws), lambda v: np.asarray(cdf(params, v))).pvalue > 1e-3
    reference = family.to_numpyro(params)
    ours = jax.vmap(family.log_prob, (None, 0))(params, draws[:50])
    np.testing.assert_allclose(np.asarray(reference.log_prob(draws[:50])), np.asarray(ours), atol=1e-4)
    theirs = reference.sample(numpyro_key, (20000,))
    assert stats.ks_2samp(np.asarray(draws), np.asarray(theirs)).pvalue > 1e-3
    return draws


def test_cut_samples_follow_the_cdf_stay_above_the_bound_and_agree_with_numpyro():
    params = _params(jax.random.key(1), 0.8)
    draws = _draws_that_follow_the_cdf_and_numpyro(FAMILY, params, jax.random.key(2), jax.random.key(3))
    assert float(draws.min()) >= np.exp(np.float32(0.8))


def test_a_bound_far_in_every_tail_draws_the_bound_itself():
    params = jnp.array([8.0, 0.0, 0.0, 0.0, -2.0, -1.0, 0.0, -3.0, -3.0, -3.0])  # L = e^8, σ ≈ 0.05, μ ≤ 0
    log_density = FAMILY.log_prob(params, jnp.float32(np.exp(8.0) * 1.001))
    assert np.isfinite(float(log_density))
    draws = jax.vmap(FAMILY.sample, (None, 0))(params, jax.random.uniform(jax.random.key(4), (64, 2)))
    assert np.all(np.isfinite(np.asarray(draws))) and float(draws.min()) >= np.float32(np.exp(8.0))


@pytest.mark.slow
def test_reparameterised_cut_samples_give_the_gradient_of_expectations():
    params = _params(jax.random.key(5), 0.3)
    u = jax.random.uniform(jax.random.key(6), (200000, 2))

    def monte_carlo(p):
        return jnp.mean(jnp.log(jax.vmap(FAMILY.sample, (None, 0))(p, u)))

    t = np.linspace(0.0, 1.0, 40001)

    def exact(p):  # E[ln x] by quadrature from the bound up, the nodes moving with it
        grid = p[0] + (16.0 - p[0]) * t
        density = jnp.exp(jax.vmap(FAMILY.log_prob, (None, 0))(p, jnp.exp(grid) * (1 + 1e-6)))
        return jnp.trapezoid(density * jnp.exp(grid) * grid, grid)

    np.testing.assert_allclose(jax.grad(monte_carlo)(params), jax.grad(exact)(params), atol=0.02)


@pytest.mark.parametrize("interval", [(0.0, 180.0), (30.0, 150.0), (2.0, 9.0)])
def test_interval_angle_density_integrates_to_one_on_its_interval_and_its_cdf_is_its_integral(interval):
    low, high = interval
    for key in jax.random.split(jax.random.key(10), 3):
        params = (1.5 * jax.random.normal(key, (ANGLE.num_params,))).at[0].set(low).at[1].set(high)
        z = np.linspace(-30.0, 30.0, 40001)
        x = low + (high - low) / (1 + np.exp(-z))
        log_p = np.asarray(jax.vmap(ANGLE.log_prob, (None, 0))(params, jnp.asarray(x)), float)
        jacobian = (x - low) * (high - x) / (high - low)
        density = np.where(np.isfinite(log_p), np.exp(log_p) * jacobian, 0.0)
        assert integrate.trapezoid(density, z) == pytest.approx(1.0, abs=1e-4)
        cdf = np.asarray(jax.vmap(ANGLE.cdf, (None, 0))(params, jnp.asarray(x[5000:35000:2000])), float)
        running = integrate.cumulative_trapezoid(density, z, initial=0.0)[5000:35000:2000]
        np.testing.assert_allclose(cdf, running, atol=1e-4)
        outside = jnp.array([low - 1.0, low, high, high + 1.0])
        assert np.all(np.isneginf(np.asarray(jax.vmap(ANGLE.log_prob, (None, 0))(params, outside))))


def test_interval_angle_samples_stay_inside_follow_the_cdf_and_agree_with_numpyro():
    params = (1.2 * jax.random.normal(jax.random.key(11), (ANGLE.num_params,))).at[0].set(25.0).at[1].set(110.0)
    draws = _draws_that_follow_the_cdf_and_numpyro(ANGLE, params, jax.random.key(12), jax.random.key(13))
    assert 25.0 <= float(draws.min()) and float(draws.max()) <= 110.0


# --- the bound ------------------------------------------------------------------------------------


def test_minimum_scale_of_hand_made_cells():
    enc = CrystalEncoder(space_groups=[1, 194, 221], elements=["Na", "Cl"], max_sites=2)
    rocksalt = enc.encode("221-a-Na-b-Cl-X-2.8")  # CsCl-like: the pair is √3/2 a apart
    assert float(minimum_scale(enc, jnp.asarray(rocksalt))) == pytest.approx(0.5 / (np.sqrt(3) / 2), rel=1e-5)
    pair = enc.encode("1-a-Na-0-0-0-a-Cl-0.05-0-0-X-5-6-7-90-90-90")  # 0.05 a apart along a
    assert float(minimum_scale(enc, jnp.asarray(pair))) == pytest.approx(10.0, rel=1e-5)
    flat = enc.encode("1-a-Na-0-0-0-X-1-1-0.001-90-90-90")  # one atom; volume 1e-3 a³ sets the bound
    assert float(minimum_scale(enc, jnp.asarray(flat), min_volume=0.1)) == pytest.approx(100 ** (1 / 3), rel=1e-5)
    assert float(minimum_scale(enc, jnp.asarray(enc.encode("194-c-Na-X-3.2-5.2")))) == pytest.approx(
        0.5 / min(1.0, np.hypot(1 / np.sqrt(3), 5.2 / 3.2 / 2)), rel=1e-5)  # fmt: skip


@pytest.mark.slow
def test_minimum_scale_is_where_the_closest_pair_reaches_the_separation():
    enc = CrystalEncoder(**VOCABULARY)
    x = np.asarray(arjax.Autoregressive(_net(enc), allowed=enc.allowed).sample(jax.random.key(7), (40,)))
    lower = np.asarray(jax.vmap(lambda v: minimum_scale(enc, v, min_volume=1e-9))(jnp.asarray(x)), float)
    for row, a in zip(x, lower):
        if enc.decode(row).num_atoms == 1:
            continue  # no pair: only the volume bounds the scale
        row = row.astype(np.float64).copy()
        row[enc.scale_position] = a
        assert metrics.min_distance(to_structure(enc.decode(row))) == pytest.approx(0.5, rel=1e-4)


def test_the_bound_finds_the_closest_image_in_cells_of_any_skew():
    enc = CrystalEncoder(space_groups=[1], elements=["Na", "Cl"], max_sites=3, max_atoms=3)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(60):
        alpha, beta = rng.uniform(2.0, 178.0, 2)
        gamma = rng.uniform(abs(alpha - beta), min(alpha + beta, 360 - alpha - beta))
        sites = "-".join(f"a-{element}-" + "-".join(f"{v:.4f}" for v in rng.uniform(0, 1, 3))
                         for element in ("Na", "Cl", "Cl"))  # fmt: skip
        lengths = rng.uniform(0.3, 3.0, 2)
        rows.append(enc.encode(f"1-{sites}-X-1-{lengths[0]:.3f}-{lengths[1]:.3f}-{alpha:.3f}-{beta:.3f}-{gamma:.3f}"))
    rows = jnp.asarray(np.array(rows))
    lower = np.asarray(jax.vmap(lambda v: minimum_scale(enc, v, min_volume=1e-12))(rows), float)
    images = np.array(list(itertools.product(range(-6, 7), repeat=3)), float)
    frac = np.asarray(jax.vmap(lambda v: atom_positions(enc, v)[0])(rows), float)
    cells = np.asarray(jax.vmap(lambda v: lattice_vectors(enc, v.at[enc.scale_position].set(1.0)))(rows), float)
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    for f, cell, bound in zip(frac, cells, lower):
        closest = min(np.linalg.norm((f[i] - f[j] + images) @ cell, axis=1).min() for i, j in pairs)
        assert bound == pytest.approx(0.5 / closest, rel=1e-4)
    bases = np.asarray(jax.vmap(reduced_basis)(jnp.asarray(cells)), float)
    transforms = cells @ np.linalg.inv(bases)
    np.testing.assert_allclose(transforms, np.round(transforms), atol=1e-4)
    np.testing.assert_allclose(np.abs(np.linalg.det(np.round(transforms))), 1.0)


# --- the model ------------------------------------------------------------------------------------


def test_every_drawn_crystal_is_structurally_valid_and_the_uncut_model_is_not():
    cut = CrystalEncoder(**VOCABULARY, min_separation=0.5)
    free = CrystalEncoder(**VOCABULARY)
    x_cut = np.asarray(arjax.Autoregressive(_net(cut), allowed=cut.allowed).sample(jax.random.key(8), (300,)))
    x_free = np.asarray(arjax.Autoregressive(_net(free), allowed=free.allowed).sample(jax.random.key(8), (300,)))
    assert structurally_valid_rows(cut, x_cut).all()
    assert structurally_valid_rows(free, x_free).mean() < 0.9
    valid = [metrics.structurally_valid(to_structure(cut.decode(row))) for row in x_cut[:100]]
    assert all(valid)


def test_a_scale_drawn_at_the_bound_itself_is_valid_after_float32_rounding():
    enc = CrystalEncoder(**VOCABULARY, min_separation=0.5)
    x = np.asarray(arjax.Autoregressive(_net(enc), allowed=enc.allowed).sample(jax.random.key(15), (200,)))
    at_bound = jnp.asarray(x).at[:, enc.scale_position].set(jnp.exp(jax.vmap(lambda v: _log_lower(enc, v))(x)))
    assert structurally_valid_rows(enc, np.asarray(at_bound, np.float32)).all()


@pytest.mark.slow
def test_cut_model_caches_like_the_generic_path_and_its_scale_conditional_integrates_to_one():
    enc = CrystalEncoder(**VOCABULARY, min_separation=0.5)
    net = _net(enc, scale=1.0)
    cached, lp_cached = arjax.sample_and_log_prob(net, jax.random.key(9), (32,), allowed=enc.allowed, cached=True)
    generic, lp_generic = arjax.sample_and_log_prob(net, jax.random.key(9), (32,), allowed=enc.allowed, cached=False)
    np.testing.assert_allclose(np.asarray(cached), np.asarray(generic), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(lp_cached), np.asarray(lp_generic), atol=1e-3)
    model = arjax.Autoregressive(net, allowed=enc.allowed)
    conditionals = jax.jit(lambda grid: model.position_log_probs(grid)[:, enc.scale_position])
    for row in np.asarray(cached)[:4]:
        lower = float(minimum_scale(enc, jnp.asarray(row)))
        u = np.concatenate([np.log(lower) + np.array([-0.5, -1e-4]), np.linspace(np.log(lower), 8.0, 12001)])
        grid = np.repeat(row[None], u.size, axis=0)
        grid[:, enc.scale_position] = np.exp(u)
        log_p = np.asarray(conditionals(jnp.asarray(grid)), float)
        assert np.all(np.isneginf(log_p[:2]))
        density = np.exp(log_p[2:]) * np.exp(u[2:])  # 0 where float32 rounding puts a node below the bound
        assert integrate.trapezoid(density, u[2:]) == pytest.approx(1.0, abs=2e-3)


def test_gamma_conditional_lives_where_the_angles_close_a_cell_and_integrates_to_one():
    enc = CrystalEncoder(**VOCABULARY)
    net = _net(enc, scale=1.0)
    x = np.asarray(arjax.Autoregressive(net, allowed=enc.allowed).sample(jax.random.key(14), (64,)))
    angles = x[:, enc.lattice_start + 2 : enc.lattice_start + 5]
    alpha, beta, gamma = angles.T
    assert np.all((np.abs(alpha - beta) < gamma) & (gamma < np.minimum(alpha + beta, 360 - alpha - beta)))
    triclinic = x[x[:, 0] == enc.group_start][:3]  # space group 2: all three angles free
    assert len(triclinic) == 3 and np.all(np.abs(triclinic[:, enc.lattice_start + 2 : enc.lattice_start + 4] - 90) > 0)
    model = arjax.Autoregressive(net, allowed=enc.allowed)
    position = enc.lattice_start + 4
    for row in triclinic:
        a, b = row[enc.lattice_start + 2 : enc.lattice_start + 4]
        low, high = abs(a - b), min(a + b, 360 - a - b)
        z = np.linspace(-25.0, 25.0, 8001)
        grid = np.repeat(row[None], z.size + 2, axis=0)
        grid[:, position] = np.concatenate([low + (high - low) / (1 + np.exp(-z)), [low * 0.99, high + 0.5]])
        log_p = np.asarray(model.position_log_probs(jnp.asarray(grid))[:, position], float)
        assert np.all(np.isneginf(log_p[-2:]))
        inside = grid[:-2, position]
        density = np.exp(log_p[:-2]) * (inside - low) * (high - inside) / (high - low)
        assert integrate.trapezoid(density, z) == pytest.approx(1.0, abs=1e-3)


def test_angles_that_close_no_cell_are_refused_by_encode_and_decode():
    enc = CrystalEncoder(space_groups=[1], elements=["Na"], max_sites=1)
    with pytest.raises(CrystalError, match="describe no cell"):
        enc.encode("1-a-Na-0-0-0-X-3-4-5-100-30-40")  # γ = 40 < |α - β| = 70
    row = enc.encode("1-a-Na-0-0-0-X-3-4-5-100-30-80")
    row[enc.lattice_start + 4] = 40.0
    with pytest.raises(ValueError, match="describe no cell"):
        enc.decode(row)


def test_bad_min_separation_is_refused_by_name():
    for bad in (0.0, -1.0, float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="min_separation"):
            CrystalEncoder(**VOCABULARY, min_separation=bad)
    with pytest.raises(ValueError, match="min_volume"):
        CrystalEncoder(**VOCABULARY, min_separation=0.5, min_volume=0.0)
