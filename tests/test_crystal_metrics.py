"""Metrics of generated crystals on hand-made structures whose answers are known."""

import jax
import numpy as np
import pytest

from arjax.crystal import Crystal, Structure, metrics, to_structure


def _rocksalt(a=5.64, cation="Na", anion="Cl"):
    return to_structure(Crystal.from_string(f"225-a-{cation}-b-{anion}-X-{a}"))


def test_min_distance_of_rocksalt_is_half_the_cell_edge():
    assert metrics.min_distance(_rocksalt(5.64)) == pytest.approx(2.82, abs=1e-9)


def test_min_distance_finds_the_close_image_in_a_strongly_skewed_cell():
    # Cell vectors a = (10, 0, 0), b = (9.9, 0.2, 0): the second atom (9.95, 0.1, 0) is 0.112 Å from a's image
    # at (10, 0, 0), while the nearest image by fractional minimum image, 0 ± a/2 ± b/2, is farther.
    lattice = np.array([[10.0, 0.0, 0.0], [9.9, 0.2, 0.0], [0.0, 0.0, 6.0]])
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    cart_second = frac[1] @ lattice
    cells = [(i, j) for i in range(-3, 4) for j in range(-3, 4)]
    candidates = [np.linalg.norm(cart_second - np.array([i, j, 0.0]) @ lattice) for i, j in cells]
    assert min(candidates) == pytest.approx(np.hypot(0.05, 0.1))
    assert metrics.min_distance(Structure(lattice, frac, ("Na", "Cl"))) == pytest.approx(min(candidates), abs=1e-9)


def test_a_too_close_pair_or_a_flat_cell_is_structurally_invalid_and_rocksalt_is_valid():
    assert metrics.structurally_valid(_rocksalt())
    close = Structure(5.0 * np.eye(3), np.array([[0.0, 0.0, 0.0], [0.09, 0.0, 0.0]]), ("Na", "Cl"))  # 0.45 Å
    assert not metrics.structurally_valid(close)
    apart = Structure(5.0 * np.eye(3), np.array([[0.0, 0.0, 0.0], [0.11, 0.0, 0.0]]), ("Na", "Cl"))  # 0.55 Å
    assert metrics.structurally_valid(apart)
    flat = Structure(np.diag([5.0, 5.0, 0.003]), np.array([[0.0, 0.0, 0.0]]), ("Na",))  # 0.075 Å³
    assert not metrics.structurally_valid(flat)


def test_smact_composition_validity_of_known_compounds():
    pytest.importorskip("smact")
    assert metrics.compositionally_valid(["Na"] * 4 + ["Cl"] * 4)  # Na+ Cl-
    assert metrics.compositionally_valid(["Sr", "Ti", "O", "O", "O"])  # Sr2+ Ti4+ 3 O2-
    assert not metrics.compositionally_valid(["Na", "Cl", "Cl"])  # no single state of Cl gives -1/2
    assert not metrics.compositionally_valid(["O", "O", "Na"])  # NaO2 with O2- only: 1 - 4 != 0
    assert metrics.compositionally_valid(["Cu", "Zn"])  # an alloy: all metals
    assert metrics.compositionally_valid(["Si", "Si"])  # one element


def test_density_of_rocksalt_from_its_masses_and_cell():
    pytest.importorskip("pymatgen")
    expected = 4 * (22.98976928 + 35.453) / 5.64**3 * 1.66053906660
    assert metrics.density(_rocksalt(5.64)) == pytest.approx(expected, rel=1e-3)


def test_a_structure_matches_its_own_supercell_and_not_another_compound():
    pytest.importorskip("pymatgen")
    nacl = _rocksalt()
    supercell = Structure(
        np.diag([2.0, 1.0, 1.0]) @ nacl.lattice,
        np.concatenate([nacl.frac_coords * [0.5, 1, 1], nacl.frac_coords * [0.5, 1, 1] + [0.5, 0, 0]]),
        nacl.species * 2,
    )
    kcl = _rocksalt(6.29, "K")
    assert metrics.novelty([supercell], [nacl]) == 0.0
    assert metrics.novelty([kcl, supercell], [nacl]) == 0.5
    assert metrics.uniqueness([nacl, supercell, kcl]) == pytest.approx(2 / 3)


def test_wasserstein_distance_of_shifted_samples_is_the_shift():
    rng = np.random.default_rng(0)
    values = rng.normal(size=200)
    assert metrics.wasserstein(values + 0.3, values) == pytest.approx(0.3, abs=1e-12)
    assert metrics.wasserstein([2, 2, 3], [2, 3, 3]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("p, q", [(0.5, 0.2), (0.26, 0.6)])
def test_wasserstein_error_of_two_bernoulli_samples_is_the_standard_error_of_their_difference(p, q):
    rng = np.random.default_rng(1)
    values, reference = rng.random(1000) < p, rng.random(1500) < q
    expected = np.sqrt(values.mean() * (1 - values.mean()) / 1000 + reference.mean() * (1 - reference.mean()) / 1500)
    error = metrics.wasserstein_error(values, reference, key=jax.random.key(0), num_resamples=400)
    assert error == pytest.approx(expected, rel=0.12)  # the bootstrap's own spread at 400 resamples: ~4 %
    assert metrics.wasserstein_error(values, reference, key=jax.random.key(0), num_resamples=400) == error


def test_wasserstein_error_refuses_bad_input_by_name():
    with pytest.raises(ValueError, match="values and reference must be 1-D"):
        metrics.wasserstein_error([1.0], [1.0, 2.0], key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_resamples must be ≥ 2"):
        metrics.wasserstein_error([1.0, 2.0], [1.0, 2.0], key=jax.random.key(0), num_resamples=1)


def test_space_group_and_p1_fraction():
    lattice = np.array([[3.0, 0, 0], [0.4, 4.1, 0], [0.3, 0.7, 5.2]])
    frac = np.array([[0.0, 0.0, 0.0], [0.11, 0.23, 0.37], [0.61, 0.19, 0.83]])
    triclinic = Structure(lattice, frac, ("Na", "Cl", "O"))
    assert metrics.space_group(_rocksalt()) == 225
    assert metrics.space_group(triclinic) == 1
    assert metrics.p1_fraction([_rocksalt(), triclinic, _rocksalt(6.29, "K")]) == pytest.approx(1 / 3)
    assert metrics.num_elements(triclinic) == 3


def _supercell(structure, repeat=2):
    """The ``repeat × 1 × 1`` supercell of a structure."""
    shifted = [structure.frac_coords * [1 / repeat, 1, 1] + [r / repeat, 0, 0] for r in range(repeat)]
    return Structure(np.diag([repeat, 1.0, 1.0]) @ structure.lattice, np.concatenate(shifted),
                     structure.species * repeat)  # fmt: skip


def test_fingerprints_of_a_cell_and_its_supercell_agree_and_orbits_count_by_size():
    pytest.importorskip("matminer")
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    from arjax.crystal.metrics import _pymatgen

    # Rock salt, a perovskite, and a low-symmetry crystal (several orbits of different sizes).
    perovskite = to_structure(Crystal.from_string("221-a-Ti-b-Sr-d-O-X-3.905"))
    low = to_structure(
        Crystal.from_string("62-c-Sr-0.75-0.1-c-Ti-0.1-0.45-c-O-0.35-0.7-d-O-0.2-0.05-0.3-X-5.5-7.8-5.5")
    )
    structures = [_rocksalt(), perovskite, low]
    fps = metrics.fingerprints(structures + [_supercell(s) for s in structures])
    assert np.isfinite(fps.structure).all() and np.isfinite(fps.composition).all()
    np.testing.assert_allclose(fps.structure[:3], fps.structure[3:], atol=1e-9)
    np.testing.assert_allclose(fps.composition[:3], fps.composition[3:], atol=1e-12)
    featurizer = CrystalNNFingerprint.from_preset("ops")
    every_atom = np.mean([featurizer.featurize(_pymatgen(low), i) for i in range(len(low.species))], axis=0)
    np.testing.assert_allclose(fps.structure[2], every_atom, atol=1e-9)  # one site per orbit, weighted by its size
    assert np.linalg.norm(fps.structure[0] - fps.structure[1]) > 0.4  # octahedral rock salt vs a perovskite


def test_coverage_of_a_set_against_itself_is_complete_and_of_another_compound_is_empty():
    pytest.importorskip("matminer")
    nacl, kcl = _rocksalt(), _rocksalt(6.29, "K")
    cscl = to_structure(Crystal.from_string("221-a-Cs-b-Cl-X-4.12"))  # 8-fold coordinated: another structure type
    reference = metrics.fingerprints([nacl, kcl])
    same = metrics.coverage(metrics.fingerprints([_supercell(nacl), kcl]), reference)
    assert same["cov_recall"] == same["cov_precision"] == 1.0
    other = metrics.coverage(metrics.fingerprints([cscl]), reference)
    assert other["cov_recall"] == other["cov_precision"] == 0.0
    half = metrics.coverage(metrics.fingerprints([nacl, cscl]), reference)
    assert (half["cov_recall"], half["cov_precision"]) == (0.5, 0.5)
    undecoded = metrics.coverage(metrics.fingerprints([nacl, cscl]), reference, num_generated=4)  # two never decoded
    assert (undecoded["cov_recall"], undecoded["cov_precision"]) == (0.5, 0.25)


def test_coverage_rejects_mismatched_fingerprints():
    fps = metrics.Fingerprints(np.zeros((2, 61)), np.zeros((3, 132)))
    with pytest.raises(ValueError, match="generated must be Fingerprints"):
        metrics.coverage(fps, fps)
    ok = metrics.Fingerprints(np.zeros((2, 61)), np.zeros((2, 132)))
    with pytest.raises(ValueError, match="num_generated=1 is smaller than the 2 fingerprints"):
        metrics.coverage(ok, ok, num_generated=1)
