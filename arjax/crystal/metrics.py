"""The field's metrics of generated crystals (CDVAE's protocol, as used by DiffCSP and CrystalFormer).

* ``structurally_valid``: every interatomic distance ≥ 0.5 Å and cell volume ≥ 0.1 Å³.
* ``compositionally_valid``: SMACT — a charge-neutral assignment of oxidation states passing the
  Pauling electronegativity test (all-metal compositions and one-element ones count as valid).
* ``uniqueness`` and ``novelty``: pymatgen ``StructureMatcher`` (ltol 0.2, stol 0.3, 5°) among the
  samples and against a training set.
* ``density`` and ``num_elements``, compared with a reference set by ``wasserstein`` (1-D earth
  mover's distance).
* ``space_group`` of a structure by spglib and the ``p1_fraction`` of a set.

Structures are ``arjax.crystal.Structure`` tuples; composition validity needs ``smact`` and the
matcher and density need ``pymatgen`` (``pip install arjax[crystal]``).
"""

import collections
import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np

from arjax.crystal.notation import ELEMENTS
from arjax.crystal.structure import Structure

__all__ = [
    "compositionally_valid",
    "density",
    "min_distance",
    "novelty",
    "num_elements",
    "p1_fraction",
    "space_group",
    "structurally_valid",
    "uniqueness",
    "wasserstein",
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
    0.0
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
