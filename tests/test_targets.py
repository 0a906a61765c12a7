"""Boltzmann targets checked against plain-NumPy enumeration and known closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from arjax.targets import (
    BETA_CRITICAL,
    WANNIER_RESIDUAL_ENTROPY,
    EnergyTarget,
    IsingSquare,
    IsingTriangular,
    SherringtonKirkpatrick,
    ground_state_by_enumeration,
    onsager_free_energy_per_site,
)

BETAS = [0.1, 0.3, 0.4406868, 0.6, 1.0]
CATALAN = 0.915965594177219015


# Plain-NumPy references, written independently of arjax (explicit site loops, no rolls).


def all_spin_configurations(n):
    index = np.arange(2**n)
    return 2 * ((index[:, None] >> np.arange(n)) & 1) - 1


def lattice_bonds(L, periodic, triangular):
    offsets = [(0, 1), (1, 0)] + ([(1, 1)] if triangular else [])
    bonds = []
    for r in range(L):
        for c in range(L):
            for dr, dc in offsets:
                r2, c2 = r + dr, c + dc
                if periodic:
                    bonds.append((r * L + c, (r2 % L) * L + c2 % L))
                elif r2 < L and c2 < L:
                    bonds.append((r * L + c, r2 * L + c2))
    return np.array(bonds)


def lattice_energy(s, L, J=1.0, h=0.0, periodic=True, triangular=False):
    i, j = lattice_bonds(L, periodic, triangular).T
    return -J * np.sum(s[..., i] * s[..., j], axis=-1) - h * np.sum(s, axis=-1)


def sk_energy(s, couplings):
    i, j = np.triu_indices(couplings.shape[0], k=1)
    return -np.sum(couplings[i, j] * s[..., i] * s[..., j], axis=-1)


def log_sum_exp(a):
    top = np.max(a)
    return top + np.log(np.sum(np.exp(a - top)))


def tokens(s):
    return jnp.asarray((s + 1) // 2, dtype=jnp.int32)


# Square lattice: Kaufman and enumeration.


@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("beta", BETAS)
def test_kaufman_log_partition_equals_plain_enumeration(L, beta):
    energies = lattice_energy(all_spin_configurations(L * L), L)
    expected = log_sum_exp(-beta * energies)
    assert IsingSquare(L).exact_log_partition(beta) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("L", [2, 4])
def test_kaufman_antiferromagnet_on_even_torus_equals_plain_enumeration(L):
    energies = lattice_energy(all_spin_configurations(L * L), L, J=-0.7)
    expected = log_sum_exp(-0.6 * energies)
    got = IsingSquare(L, J=-0.7).exact_log_partition(0.6)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    "L, J, h, periodic",
    [(3, 1.0, 0.3, True), (4, 0.8, -0.2, False), (3, -1.0, 0.0, True)],
)
def test_enumerated_log_partition_equals_plain_enumeration(L, J, h, periodic):
    energies = lattice_energy(all_spin_configurations(L * L), L, J=J, h=h, periodic=periodic)
    target = IsingSquare(L, J=J, h=h, periodic=periodic)
    for beta in (0.3, 1.0):
        expected = log_sum_exp(-beta * energies)
        assert target.exact_log_partition(beta) == pytest.approx(expected, rel=1e-10)


def test_free_energy_is_minus_log_partition_over_beta():
    target = IsingSquare(6)
    assert target.exact_free_energy(0.5) == pytest.approx(-target.exact_log_partition(0.5) / 0.5)


def test_log_partition_without_field_or_coupling_is_independent_spins():
    assert IsingSquare(8, J=0.0, h=0.5).exact_log_partition(0.7) == pytest.approx(
        64 * math.log(2 * math.cosh(0.35)), rel=1e-12
    )


# Onsager's thermodynamic limit.


@pytest.mark.parametrize("beta", [0.2, 0.3, 0.4406868, 0.6, 1.0])
def test_onsager_free_energy_is_close_to_kaufman_at_L_64(beta):
    per_site = IsingSquare(64).exact_log_partition(beta) / 64**2
    assert -beta * onsager_free_energy_per_site(beta) == pytest.approx(per_site, abs=1e-3)


@pytest.mark.parametrize("beta", [0.2, 0.3, 0.4, 0.6, 1.0])
def test_onsager_free_energy_equals_double_integral(beta):
    # -βf = ln 2 + (1/8π²) ∬ ln[cosh² 2K - sinh 2K (cos a + cos b)], periodic trapezoid rule.
    a = 2 * np.pi * np.arange(800) / 800
    k = 2 * beta
    inner = np.cosh(k) ** 2 - np.sinh(k) * (np.cos(a)[:, None] + np.cos(a)[None, :])
    expected = np.log(2) + 0.5 * np.mean(np.log(inner))
    assert -beta * onsager_free_energy_per_site(beta) == pytest.approx(expected, rel=1e-10)


def test_onsager_free_energy_at_critical_point_equals_catalan_closed_form():
    expected = 0.5 * math.log(2) + 2 * CATALAN / math.pi
    got = -BETA_CRITICAL * onsager_free_energy_per_site(BETA_CRITICAL)
    assert got == pytest.approx(expected, rel=1e-12)


def test_onsager_free_energy_limits():
    assert -1e-8 * onsager_free_energy_per_site(1e-8) == pytest.approx(math.log(2), rel=1e-12)
    assert onsager_free_energy_per_site(20.0, J=1.5) == pytest.approx(-3.0, rel=1e-12)
    assert onsager_free_energy_per_site(0.3, J=-1.0) == onsager_free_energy_per_site(0.3)


# Energies of chosen configurations.


def test_square_energies_of_hand_written_configurations():
    L, J, h = 4, 1.3, 0.0
    up = jnp.ones(L * L, dtype=jnp.int32)
    checkerboard = (jnp.arange(L)[:, None] + jnp.arange(L)[None, :]).ravel() % 2
    one_flipped = up.at[5].set(0)
    target = IsingSquare(L, J=J, h=h)
    assert float(target.energy(up)) == pytest.approx(-2 * J * L * L)
    assert float(target.energy(1 - up)) == pytest.approx(-2 * J * L * L)
    assert float(target.energy(checkerboard)) == pytest.approx(2 * J * L * L)
    assert float(target.energy(one_flipped)) == pytest.approx(-2 * J * L * L + 8 * J)
    assert float(IsingSquare(L, J=J, periodic=False).energy(up)) == pytest.approx(
        -2 * J * L * (L - 1)
    )
    with_field = IsingSquare(L, J=J, h=0.5)
    assert float(with_field.energy(up)) == pytest.approx(-2 * J * L * L - 0.5 * L * L)


def test_triangular_energies_of_hand_written_configurations():
    L = 6
    up = jnp.ones(L * L, dtype=jnp.int32)
    stripes = jnp.tile(jnp.arange(L) % 2, L)
    target = IsingTriangular(L, J=-1.0)
    assert float(target.energy(up)) == pytest.approx(3 * L * L)
    assert float(target.energy(stripes)) == pytest.approx(-L * L)


@pytest.mark.parametrize(
    "target, reference",
    [
        (IsingSquare(5, J=0.7, h=0.2), lambda s: lattice_energy(s, 5, J=0.7, h=0.2)),
        (
            IsingSquare(5, h=-0.4, periodic=False),
            lambda s: lattice_energy(s, 5, h=-0.4, periodic=False),
        ),
        (IsingTriangular(5), lambda s: lattice_energy(s, 5, J=-1.0, triangular=True)),
        (
            IsingTriangular(4, J=0.5, periodic=False),
            lambda s: lattice_energy(s, 4, J=0.5, periodic=False, triangular=True),
        ),
    ],
    ids=["square-periodic", "square-open", "triangular-periodic", "triangular-open"],
)
def test_lattice_energies_equal_plain_numpy(target, reference):
    s = 2 * np.random.default_rng(0).integers(0, 2, size=(64, target.num_positions)) - 1
    np.testing.assert_allclose(target.energies(tokens(s)), reference(s), rtol=1e-6)


def test_vmapped_energy_equals_loop_and_batched_energies():
    target = SherringtonKirkpatrick(12, key=jax.random.key(3))
    x = np.random.default_rng(4).integers(0, 2, size=(2, 3, 12))
    energy = jax.jit(lambda t, y: t.energy(y))
    loop = np.array([[energy(target, x[i, j]) for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(jax.vmap(target.energy)(x.reshape(6, 12)), loop.ravel(), rtol=1e-6)
    np.testing.assert_allclose(target.energies(x), loop, rtol=1e-6)


@pytest.mark.parametrize(
    "target", [IsingSquare(3), SherringtonKirkpatrick(9, key=jax.random.key(0))]
)
def test_targets_pass_through_jit_as_arguments(target):
    x = jnp.arange(9) % 2
    jitted = jax.jit(lambda t, y: t.energy(y))(target, x)
    assert float(jitted) == pytest.approx(float(target.energy(x)), rel=1e-6)


def test_energy_dtype_follows_default_float():
    x = jnp.ones(9, dtype=jnp.int32)
    assert IsingSquare(3).energy(x).dtype == jnp.zeros(()).dtype
    with jax.enable_x64(True):
        assert IsingSquare(3).energy(x).dtype == jnp.float64


# Triangular antiferromagnet.


@pytest.mark.parametrize("L", [2, 3, 4])
def test_triangular_antiferromagnet_ground_state_equals_plain_enumeration(L):
    energies = lattice_energy(all_spin_configurations(L * L), L, J=-1.0, triangular=True)
    e0, degeneracy = ground_state_by_enumeration(IsingTriangular(L))
    assert e0 == np.min(energies) == -L * L
    assert degeneracy == np.sum(energies == np.min(energies))


def test_triangular_log_partition_equals_plain_enumeration():
    energies = lattice_energy(all_spin_configurations(9), 3, J=-1.0, triangular=True)
    for beta in (0.3, 2.0):
        expected = log_sum_exp(-beta * energies)
        got = IsingTriangular(3).exact_log_partition(beta)
        assert got == pytest.approx(expected, rel=1e-10)


def test_wannier_constant_equals_its_integral():
    integral, _ = quad(lambda w: np.log(2 * np.cos(w)), 0, np.pi / 3, epsabs=1e-14)
    assert WANNIER_RESIDUAL_ENTROPY == pytest.approx(2 / np.pi * integral, abs=1e-13)


# Sherrington-Kirkpatrick.


def test_sk_couplings_are_symmetric_gaussian_with_variance_one_over_n():
    n = 400
    couplings = np.asarray(SherringtonKirkpatrick(n, key=jax.random.key(0)).couplings)
    np.testing.assert_array_equal(couplings, couplings.T)
    np.testing.assert_array_equal(np.diag(couplings), 0.0)
    upper = couplings[np.triu_indices(n, k=1)]
    assert np.var(upper) * n == pytest.approx(1.0, abs=0.02)
    assert np.mean(upper) == pytest.approx(0.0, abs=0.005)


def test_sk_same_key_same_couplings():
    a = SherringtonKirkpatrick(8, key=jax.random.key(1)).couplings
    b = SherringtonKirkpatrick(8, key=jax.random.key(1)).couplings
    np.testing.assert_array_equal(a, b)


def test_sk_log_partition_and_ground_state_equal_plain_enumeration():
    target = SherringtonKirkpatrick(10, key=jax.random.key(7))
    couplings = np.asarray(target.couplings, dtype=np.float64)
    s = all_spin_configurations(10)
    energies = sk_energy(s, couplings)
    np.testing.assert_allclose(target.energies(tokens(s)), energies, rtol=1e-5, atol=1e-5)
    for beta in (0.5, 1.0, 3.0):
        expected = log_sum_exp(-beta * energies)
        assert target.exact_log_partition(beta) == pytest.approx(expected, rel=1e-10)
    assert target.ground_state_energy() == pytest.approx(np.min(energies), rel=1e-12)
    assert ground_state_by_enumeration(target)[1] == 2


@pytest.mark.slow
def test_sk_log_partition_at_twenty_spins_equals_plain_enumeration():
    target = SherringtonKirkpatrick(20, key=jax.random.key(2))
    couplings = np.asarray(target.couplings, dtype=np.float64)
    s = all_spin_configurations(20).astype(np.float64)
    energies = -0.5 * np.einsum("bi,ij,bj->b", s, couplings, s)
    assert target.exact_log_partition(1.0) == pytest.approx(log_sum_exp(-energies), rel=1e-10)


# Generic energy targets.


def test_energy_target_log_partition_equals_plain_enumeration():
    def potts_chain(x):
        return -jnp.sum(x[1:] == x[:-1]) + 0.25 * jnp.sum(x == 2)

    target = EnergyTarget(potts_chain, num_positions=5, num_categories=3)
    states = np.array(np.meshgrid(*[range(3)] * 5, indexing="ij")).reshape(5, -1).T
    energies = -np.sum(states[:, 1:] == states[:, :-1], axis=1) + 0.25 * np.sum(states == 2, axis=1)
    for beta in (0.5, 2.0):
        expected = log_sum_exp(-beta * energies)
        assert target.exact_log_partition(beta) == pytest.approx(expected, rel=1e-10)
    assert target.ground_state_energy() == pytest.approx(np.min(energies))


# Errors.


@pytest.mark.parametrize("L", [1, 0, -3, 2.5, True])
def test_lattice_size_below_two_is_rejected(L):
    with pytest.raises(ValueError, match="L must be an integer ≥ 2, got"):
        IsingSquare(L)
    with pytest.raises(ValueError, match="L must be an integer ≥ 2, got"):
        IsingTriangular(L)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_nonpositive_or_nan_beta_is_rejected(beta):
    with pytest.raises(ValueError, match="beta"):
        IsingSquare(3).exact_log_partition(beta)
    with pytest.raises(ValueError, match="beta"):
        onsager_free_energy_per_site(beta)


def test_wrong_shape_of_x_is_rejected_with_the_expected_shape():
    target = IsingSquare(3)
    with pytest.raises(ValueError, match=r"x must have shape \(9,\).*got shape \(3, 3\)"):
        target.energy(jnp.zeros((3, 3), dtype=jnp.int32))
    with pytest.raises(ValueError, match=r"x must have shape \(9,\)"):
        jax.vmap(target.energy)(jnp.zeros((4, 8), dtype=jnp.int32))


def test_float_x_is_rejected():
    with pytest.raises(TypeError, match="x must hold integer tokens"):
        IsingSquare(3).energy(jnp.zeros(9))


def test_too_large_exact_log_partition_is_rejected():
    with pytest.raises(ValueError, match="L\\*L ≤ 24"):
        IsingSquare(5, periodic=False).exact_log_partition(0.5)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        IsingTriangular(5).exact_log_partition(0.5)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        EnergyTarget(jnp.sum, num_positions=16, num_categories=3).exact_log_partition(1.0)


def test_invalid_constructor_arguments_are_rejected():
    with pytest.raises(ValueError, match="num_spins must be an integer ≥ 2"):
        SherringtonKirkpatrick(1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_categories must be an integer ≥ 2"):
        EnergyTarget(jnp.sum, num_positions=3, num_categories=1)
    with pytest.raises(ValueError, match="J must be finite"):
        IsingSquare(3, J=float("nan"))
