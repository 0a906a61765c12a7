"""Differentiable geometry of encoded crystals: the atoms and cell of ``to_structure``, and an overlap penalty."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arjax import Autoregressive
from arjax.crystal import CrystalEncoder, CrystalTransformer, lattice_matrix, metrics, to_structure
from arjax.crystal.geometry import atom_positions, lattice_vectors, overlap_penalty

CRYSTALS = [
    "225-a-Na-b-Cl-X-5.64",
    "221-a-Sr-b-Ti-c-O-X-3.9",
    "225-f-Cu-0.3-X-5.0",  # 32f x,x,x
    "225-k-O-0.1-0.3-X-9.0",  # 96k x,x,z
    "194-c-Mg-X-3.2-5.2",  # hexagonal: gamma = 120
    "12-i-Si-0.1-0.3-X-5.1-3.4-6.2-101.5",  # monoclinic: beta free
    "2-i-O-0.1-0.2-0.3-i-O-0.6-0.7-0.15-X-3.1-4.2-5.3-80-95-105",  # triclinic
]
ENCODER = CrystalEncoder.for_crystals(CRYSTALS, max_atoms=None)


def _same_points(a, b, tol=1e-5):
    d = np.abs((a[:, None] - b[None] + 0.5) % 1.0 - 0.5).max(-1)
    return len(a) == len(b) and bool((d.min(axis=1) < tol).all()) and bool((d.min(axis=0) < tol).all())


@pytest.mark.parametrize("text", CRYSTALS)
def test_atoms_and_cell_are_to_structures(text):
    x = ENCODER.encode(text)
    reference = to_structure(ENCODER.decode(x))
    frac, present = atom_positions(ENCODER, jnp.asarray(x, jnp.float32))
    assert _same_points(np.asarray(frac)[np.asarray(present)], reference.frac_coords)
    cell = lattice_vectors(ENCODER, jnp.asarray(x, jnp.float32))
    assert np.allclose(cell, reference.lattice, atol=1e-4)
    assert np.allclose(cell, lattice_matrix(*ENCODER.decode(x).lattice), atol=1e-4)


def test_overlap_penalty_of_a_pair_is_the_hand_computed_one_and_pushes_it_apart():
    enc = CrystalEncoder(space_groups=[1], elements=["Na", "Cl"], max_sites=2)
    x = jnp.asarray(enc.encode("1-a-Na-0-0-0-a-Cl-0.05-0-0-X-5-5-5-90-90-90"), jnp.float32)  # 0.25 Å apart
    value, grad = jax.value_and_grad(lambda v: overlap_penalty(enc, v, margin=0.1))(x)
    assert float(value) == pytest.approx(0.5 * 0.35**2, rel=1e-4)
    cl_x = enc.coordinate_start + 3
    assert float(grad[cl_x]) == pytest.approx(-0.35 * 5.0, rel=1e-4)  # moving Cl along +x lowers it
    assert float(overlap_penalty(enc, x.at[cl_x].set(0.5))) == 0.0
    assert float(grad[enc.scale_position]) == pytest.approx(-0.35 * 0.05, rel=1e-4)  # so does a larger cell


@pytest.mark.slow
def test_overlap_penalty_is_positive_exactly_for_crystals_closer_than_the_separation():
    enc = CrystalEncoder(space_groups=[1, 2, 12, 65, 221, 225], elements=["O", "Na", "Cl"], max_sites=4, max_atoms=24)
    net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0))
    x = np.asarray(Autoregressive(net, allowed=enc.allowed).sample(jax.random.key(1), (96,)), np.float64)
    # an untrained net draws some angles with no cell, and flat cells whose close images lie beyond the 26 neighbours
    x = np.stack([v for v in x if _builds(enc, v) and _spacing(to_structure(enc.decode(v)).lattice) > 0.5])
    penalty = np.asarray(jax.vmap(lambda v: overlap_penalty(enc, v, margin=0.0))(jnp.asarray(x)))
    close = np.array([metrics.min_distance(to_structure(enc.decode(v)), cutoff=1.0) < 0.5 for v in x])
    merged = np.array([len(to_structure(enc.decode(v)).species) < int(atom_positions(enc, v)[1].sum()) for v in x])
    assert 0 < close.sum() < len(x)
    np.testing.assert_array_equal(penalty > 0, close | merged)


def _builds(enc, x) -> bool:
    try:
        to_structure(enc.decode(x))
    except ValueError:
        return False
    return True


def _spacing(lattice) -> float:
    volume = abs(np.linalg.det(lattice))
    return min(volume / np.linalg.norm(np.cross(lattice[(k + 1) % 3], lattice[(k + 2) % 3])) for k in range(3))


def test_overlap_penalty_checks_its_arguments():
    x = jnp.asarray(ENCODER.encode(CRYSTALS[0]))
    with pytest.raises(ValueError, match="min_separation"):
        overlap_penalty(ENCODER, x, min_separation=0.0)
    with pytest.raises(ValueError, match="margin"):
        overlap_penalty(ENCODER, x, margin=-0.1)
