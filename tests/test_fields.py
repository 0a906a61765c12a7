"""Lattice fields: the free field's exact ln Z, and the variational free energy of real-valued nets against it
(and against quadrature for φ⁴)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arjax.estimators import free_energy
from arjax.families import GaussianMixture
from arjax.nn import MADE
from arjax.targets import FreeScalarField, Phi4
from arjax.train import fit_free_energy


def _laplacian_matrix(L):
    """-Δ on the periodic L×L lattice, assembled bond by bond (right and down neighbours)."""
    n = L * L
    a = np.zeros((n, n))
    for r, c in itertools.product(range(L), range(L)):
        i = r * L + c
        for j in (r * L + (c + 1) % L, ((r + 1) % L) * L + c):
            a[i, i] += 1
            a[j, j] += 1
            a[i, j] -= 1
            a[j, i] -= 1
    return a


@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_free_field_action_and_log_partition_match_the_assembled_quadratic_form(L):
    field = FreeScalarField(L, mass=0.7)
    a = _laplacian_matrix(L) + 0.7**2 * np.eye(L * L)
    phi = np.random.default_rng(L).normal(size=(5, L * L))
    expected = 0.5 * np.einsum("bi,ij,bj->b", phi, a, phi)
    np.testing.assert_allclose(field.energies(jnp.asarray(phi, jnp.float32)), expected, rtol=1e-5)
    for beta in (0.5, 2.0):
        expected = 0.5 * L * L * np.log(2 * np.pi / beta) - 0.5 * np.linalg.slogdet(a)[1]
        assert np.isclose(field.exact_log_partition(beta), expected, rtol=1e-12)


def test_phi4_action_is_the_free_field_plus_the_local_terms():
    field, free = Phi4(3, mass_squared=-0.5, coupling=0.3), FreeScalarField(3, mass=1.0)
    phi = jnp.asarray(np.random.default_rng(0).normal(size=(4, 9)), jnp.float32)
    expected = free.energies(phi) + jnp.sum(0.5 * (-0.5 - 1.0) * phi**2 + 0.3 * phi**4, -1)  # free: ½ φ² (m = 1)
    np.testing.assert_allclose(field.energies(phi), expected, rtol=1e-5)


def test_bad_field_arguments():
    with pytest.raises(ValueError, match="mass must be a finite number > 0"):
        FreeScalarField(4, mass=0.0)
    with pytest.raises(ValueError, match="coupling must be a finite number > 0"):
        Phi4(4, mass_squared=1.0, coupling=-1.0)
    with pytest.raises(ValueError, match="L must be an integer"):
        Phi4(0, mass_squared=1.0, coupling=1.0)
    with pytest.raises(ValueError, match=r"phi must have shape \(16,\)"):
        FreeScalarField(4, mass=1.0).energy(jnp.zeros(15))


def test_a_gaussian_made_learns_the_free_field_to_a_relative_1e_3():
    field = FreeScalarField(4, mass=1.0)
    exact = field.exact_free_energy(1.0)
    net = MADE(num_positions=16, families=GaussianMixture(1), depth=0, key=jax.random.key(0))
    adam = optax.adam(optax.cosine_decay_schedule(0.05, 1000, 0.01))
    net, _ = fit_free_energy(net, field, 1.0, optimizer=adam, num_steps=1000, batch_size=128, key=jax.random.key(1),
                             progress=False, log_every=250)  # fmt: skip
    est = free_energy(net, field, 1.0, jax.random.key(2), 20_000)
    assert float(est.variational) >= exact - 4 * float(est.variational_stderr)
    assert abs(float(est.variational) - exact) < 1e-3 * abs(exact)
    assert abs(float(est.importance) - exact) < 4 * float(est.importance_stderr) + 1e-5 * abs(exact)


def _phi4_log_partition_by_quadrature(field, half_width=4.0, points=41):
    """ln Z of a 2×2 φ⁴ lattice by the trapezoid rule on a 4-D grid (the integrand decays like e^{-λφ⁴})."""
    nodes = np.linspace(-half_width, half_width, points)
    h = nodes[1] - nodes[0]
    grid = np.stack(np.meshgrid(*[nodes] * 4, indexing="ij"), -1).reshape(-1, 4)
    s = np.asarray(jax.jit(field.energies)(jnp.asarray(grid, jnp.float32)), float)
    top = np.max(-s)
    return top + np.log(np.sum(np.exp(-s - top))) + 4 * np.log(h)


def test_a_mixture_made_bounds_and_estimates_phi4_free_energy_against_quadrature():
    field = Phi4(2, mass_squared=-1.0, coupling=0.25)
    exact = -_phi4_log_partition_by_quadrature(field)
    net = MADE(num_positions=4, families=GaussianMixture(2), width=32, depth=2, key=jax.random.key(0))
    adam = optax.adam(optax.cosine_decay_schedule(0.01, 600, 0.05))
    net, _ = fit_free_energy(net, field, 1.0, optimizer=adam, num_steps=600, batch_size=128, key=jax.random.key(1),
                             progress=False, log_every=100)  # fmt: skip
    est = free_energy(net, field, 1.0, jax.random.key(2), 20_000)
    assert float(est.variational) >= exact - 4 * float(est.variational_stderr)
    assert float(est.variational) - exact < 0.05 * abs(exact)
    assert abs(float(est.importance) - exact) < 4 * float(est.importance_stderr) + 1e-4
