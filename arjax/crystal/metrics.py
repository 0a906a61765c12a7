"""The field's metrics of generated crystals (CDVAE's protocol, as used by DiffCSP and CrystalFormer).

* ``structurally_valid``: every interatomic distance ≥ 0.5 Å and cell volume ≥ 0.1 Å³.
* ``compositionally_valid``: SMACT — a charge-neutral assignment of oxidation states passing the
  Pauling electronegativity test (all-metal compositions and one-element ones count as valid).
* ``uniqueness`` and ``novelty``: pymatgen ``StructureMatcher`` (ltol 0.2, stol 0.3, 5°) among the
  samples and against a training set.
* ``density`` and ``num_elements``, compared with a reference set by ``wasserstein`` (1-D earth
  mover's distance), with its bootstrap standard error ``wasserstein_error``.
* ``space_group`` of a structure by spglib and the ``p1_fraction`` of a set.
* ``fingerprints`` (CrystalNN site fingerprints and Magpie composition features, as CDVAE) and
  ``coverage``: COV-R and COV-P of generated crystals against a reference set.

Structures are ``arjax.crystal.Structure`` tuples; composition validity needs ``smact``, the
matcher and density need ``pymatgen`` and the fingerprints ``matminer`` (``pip install arjax[crystal]``).
"""

import collections
import itertools
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from arjax.crystal.notation import ELEMENTS
from arjax.crystal.structure import Structure

__all__ = [
    "Fingerprints",
    "composition_fingerprints",
    "compositionally_valid",
    "coverage",
    "density",
    "fingerprints",
    "min_distance",
    "novelty",
    "num_elements",
    "p1_fraction",
    "space_group",
    "structurally_valid",
    "uniqueness",
    "wasserstein",
    "wasserstein_error",
]

_AVOGADRO_CM3 = 1.66053906660  # g/cm³ per (amu/Å³)


def min_distance(structure: Structure, cutoff: float = 10.0) -> float:
    """The smallest distance (Å) between two distinct atoms of the periodic crystal, or ``cutoff`` if none is closer.

    Every periodic image within ``cutoff`` is searched (enough cells along each axis for the
    cell's interplanar spacings), so skewed cells are handled exactly.

    >>> nacl = Structure(5.64 * np.eye(3), np.array([[0, 0, 0], [0.5, 0, 0]]), ("Na", "Cl"))
    >>> round(min_distance(nacl), 6)
    2.82
    """
    lattice = np.asarray(structure.lattice, np.float64)
    frac = np.asarray(structure.frac_coords, np.float64)
    if len(frac) < 2:
        return float(cutoff)
    volume = abs(np.linalg.det(lattice))
    if volume <= 0:
        return 0.0
    spacings = [volume / np.linalg.norm(np.cross(lattice[(k + 1) % 3], lattice[(k + 2) % 3])) for k in range(3)]
    reach = [int(math.ceil(cutoff / d)) + 1 for d in spacings]
    shifts = np.array(list(itertools.product(*[range(-r, r + 1) for r in reach])), np.float64)
    diff = (frac[:, None, :] - frac[None, :, :] + 0.5) % 1.0 - 0.5  # [M, M, 3]
    distinct = ~np.eye(len(frac), dtype=bool)
    best = float(cutoff)
    for chunk in np.array_split(shifts, max(1, len(shifts) // 512)):
        cart = (diff[:, :, None, :] + chunk[None, None]) @ lattice
        dist = np.linalg.norm(cart, axis=-1).min(axis=-1)
        best = min(best, float(dist[distinct].min()))
    return best


def structurally_valid(structure: Structure, *, min_separation: float = 0.5, min_volume: float = 0.1) -> bool:
    """CDVAE's structural validity: all distances between distinct atoms ≥ 0.5 Å and volume ≥ 0.1 Å³.

    >>> pair = Structure(5.0 * np.eye(3), np.array([[0, 0, 0], [0.06, 0, 0]]), ("Na", "Cl"))   # 0.3 Å apart
    >>> structurally_valid(pair)
    False
    """
    volume = abs(float(np.linalg.det(np.asarray(structure.lattice, np.float64))))
    return bool(volume >= min_volume and min_distance(structure, cutoff=min_separation + 1.0) >= min_separation)


def compositionally_valid(species: Sequence[str]) -> bool:
    """SMACT validity of a composition (CDVAE's ``smact_validity``): a charge-neutral set of oxidation states.

    The counts are reduced by their greatest common divisor; one oxidation state per element
    (from SMACT's default list) must give ``Σ n_i q_i = 0`` with every cation less
    electronegative than every anion (Pauling). One-element and all-metal compositions are valid.

    Example (needs smact):
        >>> compositionally_valid(["Na"] * 4 + ["Cl"] * 4), compositionally_valid(["Na", "Cl", "Cl"])  # doctest: +SKIP
        (True, False)
    """
    import smact
    from smact.screening import pauling_test

    counts = collections.Counter(species)
    symbols = tuple(counts)
    unknown = [s for s in symbols if s not in ELEMENTS]
    if unknown:
        raise ValueError(f"species holds unknown element symbols {unknown}")
    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    divisor = math.gcd(*counts.values())
    stoichiometry = [counts[s] // divisor for s in symbols]
    elements = smact.element_dictionary(symbols)
    electronegativities = [elements[s].pauling_eneg for s in symbols]
    for states in itertools.product(*[elements[s].oxidation_states or () for s in symbols]):
        if sum(q * n for q, n in zip(states, stoichiometry)) != 0:
            continue
        try:
            if pauling_test(states, electronegativities):
                return True
        except TypeError:  # an element without electronegativity data: assumed fine, as in CDVAE
            return True
    return False


def density(structure: Structure) -> float:
    """Mass density in g/cm³ (atomic masses from pymatgen).

    Example (needs pymatgen):
        >>> from arjax.crystal import Crystal, to_structure
        >>> round(density(to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))), 3)  # doctest: +SKIP
        2.164
    """
    from pymatgen.core import Element

    mass = sum(float(Element(s).atomic_mass) for s in structure.species)
    volume = abs(float(np.linalg.det(np.asarray(structure.lattice, np.float64))))
    return mass / volume * _AVOGADRO_CM3


def num_elements(structure: Structure) -> int:
    """Number of distinct elements.

    >>> num_elements(Structure(np.eye(3), np.zeros((3, 3)), ("Na", "Cl", "Cl")))
    2
    """
    return len(set(structure.species))


def wasserstein(values: Sequence[float], reference: Sequence[float]) -> float:
    """1-D Wasserstein (earth mover's) distance between two samples (``scipy.stats.wasserstein_distance``).

    >>> wasserstein([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    0.5
    """
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(values, float), np.asarray(reference, float)))


def wasserstein_error(values: Sequence[float], reference: Sequence[float], *, key, num_resamples: int = 200) -> float:
    """Bootstrap standard error of ``wasserstein(values, reference)``: both samples resampled with replacement.

    For two sets of 0/1 values the distance is the difference of their means, whose standard error
    is ``sqrt(p(1 - p)/n + q(1 - q)/m)``:

    >>> import jax
    >>> error = wasserstein_error([0, 1] * 500, [0] * 800 + [1] * 200, key=jax.random.key(0))
    >>> bool(0.017 < error < 0.024)  # sqrt(0.25/1000 + 0.16/1000) = 0.0202
    True
    """
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if values.ndim != 1 or reference.ndim != 1 or min(values.size, reference.size) < 2:
        raise ValueError(f"wasserstein_error: values and reference must be 1-D with ≥ 2 entries; got shapes "
                         f"{values.shape} and {reference.shape}")  # fmt: skip
    if num_resamples < 2:
        raise ValueError(f"wasserstein_error: num_resamples must be ≥ 2; got {num_resamples}")
    k_values, k_reference = jax.random.split(key)
    i = np.asarray(jax.random.randint(k_values, (num_resamples, values.size), 0, values.size))
    j = np.asarray(jax.random.randint(k_reference, (num_resamples, reference.size), 0, reference.size))
    distances = [wasserstein(values[a], reference[b]) for a, b in zip(i, j)]
    return float(np.std(distances, ddof=1))


def space_group(structure: Structure, *, symprec: float = 0.1) -> int:
    """The space group spglib finds for a structure (1 when it finds none).

    >>> from arjax.crystal import Crystal, to_structure
    >>> space_group(to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64")))
    225
    """
    import spglib

    numbers = [ELEMENTS.index(s) + 1 for s in structure.species]
    cell = (np.asarray(structure.lattice, np.float64), np.asarray(structure.frac_coords, np.float64), numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return 1 if data is None else int(data.number)


def p1_fraction(structures: Sequence[Structure], *, symprec: float = 0.1) -> float:
    """Fraction of structures in which spglib finds no symmetry beyond P1.

    >>> from arjax.crystal import Crystal, to_structure
    >>> triclinic = Structure(np.diag([3.0, 4.0, 5.0]), np.array([[0, 0, 0], [0.11, 0.23, 0.37]]), ("Na", "Cl"))
    >>> p1_fraction([to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64")), triclinic])
    0.5
    """
    groups = [space_group(s, symprec=symprec) for s in structures]
    return float(np.mean([g == 1 for g in groups])) if groups else float("nan")


def uniqueness(structures: Sequence[Structure]) -> float:
    """Fraction of distinct structures: the number of ``StructureMatcher`` groups over the number of structures.

    Example (needs pymatgen):
        >>> from arjax.crystal import Crystal, to_structure
        >>> nacl = to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))
        >>> kcl = to_structure(Crystal.from_string("225-a-K-b-Cl-X-6.29"))
        >>> round(uniqueness([nacl, kcl, nacl]), 4)  # doctest: +SKIP
        0.6667
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if not structures:
        return float("nan")
    matcher = StructureMatcher()
    groups = matcher.group_structures([_pymatgen(s) for s in structures])
    return len(groups) / len(structures)


def novelty(structures: Sequence[Structure], reference: Sequence[Structure]) -> float:
    """Fraction of ``structures`` that ``StructureMatcher`` matches to no structure of ``reference``.

    Only structures of the same reduced formula are compared (the matcher would reject the others).

    Example (needs pymatgen):
        >>> from arjax.crystal import Crystal, to_structure
        >>> nacl = to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))
        >>> kcl = to_structure(Crystal.from_string("225-a-K-b-Cl-X-6.29"))
        >>> novelty([nacl, kcl], [nacl])  # doctest: +SKIP
        0.5
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if not structures:
        return float("nan")
    matcher = StructureMatcher()
    by_formula = collections.defaultdict(list)
    for s in reference:
        p = _pymatgen(s)
        by_formula[p.composition.reduced_formula].append(p)
    novel = 0
    for s in structures:
        p = _pymatgen(s)
        novel += not any(matcher.fit(p, r) for r in by_formula.get(p.composition.reduced_formula, ()))
    return novel / len(structures)


def _pymatgen(structure: Structure):
    from pymatgen.core import Lattice
    from pymatgen.core import Structure as PymatgenStructure

    return PymatgenStructure(Lattice(structure.lattice), list(structure.species), structure.frac_coords)


class Fingerprints(NamedTuple):
    """Fingerprints: ``structure`` ``[M, 61]`` (NaN where CrystalNN failed), ``composition`` ``[M, 132]``."""

    structure: np.ndarray
    composition: np.ndarray


def fingerprints(structures: Sequence[Structure], *, symprec: float = 1e-4) -> Fingerprints:
    """CDVAE's fingerprints: the mean CrystalNN ("ops" preset) site fingerprint and Magpie ``ElementProperty``.

    The structure fingerprint averages the site fingerprints of every atom of the cell. Atoms that
    spglib (``symprec``) finds symmetry-equivalent have the same environment, so each orbit is
    fingerprinted once and weighted by its size; a cell and any supercell of it get the same
    fingerprint. Where CrystalNN fails the row is NaN (CDVAE then counts the crystal as uncovered).

    Example (needs matminer):
        >>> from arjax.crystal import Crystal, to_structure
        >>> fps = fingerprints([to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))])  # doctest: +SKIP
        >>> fps.structure.shape, fps.composition.shape  # doctest: +SKIP
        ((1, 61), (1, 132))
    """
    import spglib
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    site_featurizer = CrystalNNFingerprint.from_preset("ops")
    width = len(site_featurizer.feature_labels())
    rows = []
    for s in structures:
        numbers = [ELEMENTS.index(e) + 1 for e in s.species]
        cell = (np.asarray(s.lattice, np.float64), np.asarray(s.frac_coords, np.float64), numbers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = spglib.get_symmetry_dataset(cell, symprec=symprec)
            representatives, counts = np.unique(np.arange(len(numbers)) if data is None else data.equivalent_atoms,
                                                return_counts=True)  # fmt: skip
            try:
                pymatgen = _pymatgen(s)
                sites = np.array([site_featurizer.featurize(pymatgen, int(i)) for i in representatives], np.float64)
                rows.append(counts @ sites / counts.sum())
            except Exception:  # noqa: BLE001 — CrystalNN raises many kinds; CDVAE treats any as "no fingerprint"
                rows.append(np.full(width, np.nan))
    structure_rows = np.array(rows).reshape(-1, width)
    return Fingerprints(structure_rows, composition_fingerprints([s.species for s in structures]))


def composition_fingerprints(compositions: Sequence[Sequence[str]]) -> np.ndarray:
    """Magpie ``ElementProperty`` features ``[M, 132]`` of compositions given as lists of species (one per atom).

    Example (needs matminer):
        >>> composition_fingerprints([["Na", "Cl"], ["Na"] * 4 + ["Cl"] * 4]).shape  # doctest: +SKIP
        (2, 132)
    """
    from matminer.featurizers.composition.composite import ElementProperty
    from pymatgen.core import Composition

    featurizer = ElementProperty.from_preset("magpie")
    by_formula: dict[str, np.ndarray] = {}
    rows = []
    for species in compositions:
        composition = Composition(collections.Counter(species))
        formula = composition.reduced_formula
        if formula not in by_formula:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                by_formula[formula] = np.asarray(featurizer.featurize(composition), np.float64)
        rows.append(by_formula[formula])
    return np.array(rows).reshape(-1, len(featurizer.feature_labels()))


def coverage(
    generated: Fingerprints,
    reference: Fingerprints,
    *,
    composition_scale: np.ndarray | None = None,
    structure_cutoff: float = 0.4,
    composition_cutoff: float = 10.0,
    num_generated: int | None = None,
) -> dict[str, float]:
    """CDVAE's coverage: COV-R (recall) and COV-P (precision) of generated crystals against reference crystals.

    A pair is close when the Euclidean distance of their structure fingerprints is ≤
    ``structure_cutoff`` and that of their standardised composition fingerprints is ≤
    ``composition_cutoff`` (CDVAE's MP-20 cutoffs 0.4 and 10). COV-R is the fraction of reference
    crystals with a close generated one; COV-P the fraction of generated crystals with a close
    reference one, over *all* generated crystals: those without a fingerprint count as not close, and
    ``num_generated`` (default ``len(generated.structure)``) counts samples that never became a
    structure (CDVAE's ``num_gen_crystals``).
    The composition features are standardised by the mean and standard deviation of
    ``composition_scale`` (rows of ``composition_fingerprints``, e.g. of the training set; default
    the reference's), NaN features set to 0 — CDVAE uses fixed constants from its own training data.

    Also returned: the mean nearest-neighbour structure distances (``amsd_recall``, ``amsd_precision``).

    >>> ref = Fingerprints(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0], [5.0]]))
    >>> gen = Fingerprints(np.array([[0.1, 0.0], [np.nan, np.nan], [9.0, 9.0]]), np.array([[0.0], [0.0], [5.0]]))
    >>> {k: round(v, 4) for k, v in coverage(gen, ref, composition_cutoff=0.5).items()}
    {'cov_recall': 0.5, 'cov_precision': 0.3333, 'amsd_recall': 0.7227, 'amsd_precision': 5.7069}
    """
    from scipy.spatial.distance import cdist

    for name, fps in (("generated", generated), ("reference", reference)):
        if not isinstance(fps, Fingerprints) or len(fps.structure) != len(fps.composition):
            raise ValueError(f"{name} must be Fingerprints with as many structure as composition rows")
    if not len(reference.structure) or not len(generated.structure):
        raise ValueError("coverage needs at least one generated and one reference crystal")
    total = len(generated.structure) if num_generated is None else num_generated
    if total < len(generated.structure):
        raise ValueError(f"num_generated={num_generated} is smaller than the {len(generated.structure)} fingerprints")
    scale = np.asarray(reference.composition if composition_scale is None else composition_scale, np.float64)
    mean, std = np.nanmean(scale, axis=0), np.nanstd(scale, axis=0)
    std = np.where(std > 0, std, 1.0)

    def standardised(rows):
        return np.nan_to_num((np.asarray(rows, np.float64) - mean) / std, nan=0.0)

    has = np.isfinite(generated.structure).all(axis=1)
    ref_has = np.isfinite(reference.structure).all(axis=1)
    structure = cdist(generated.structure[has], reference.structure[ref_has])
    composition = cdist(standardised(generated.composition[has]), standardised(reference.composition[ref_has]))
    close = (structure <= structure_cutoff) & (composition <= composition_cutoff)
    recall = np.zeros(len(reference.structure), bool)
    recall[ref_has] = close.any(axis=0)
    return {
        "cov_recall": float(recall.mean()),
        "cov_precision": float(close.any(axis=1).sum() / total),
        "amsd_recall": float(structure.min(axis=0).mean()) if structure.size else float("nan"),
        "amsd_precision": float(structure.min(axis=1).mean()) if structure.size else float("nan"),
    }
