"""From Wyckoff descriptions to atoms in a cell and back (the way back uses spglib)."""

import functools
import warnings
from typing import NamedTuple

import numpy as np

from arjax.crystal.notation import ELEMENTS, Crystal, Site
from arjax.crystal.wyckoff import (
    free_coordinates,
    general_positions,
    hall_number,
    multiplicities,
    orbit,
    parse_affine,
    representatives,
    wyckoff_letters,
)

__all__ = ["Structure", "from_structure", "lattice_matrix", "lattice_parameters", "to_structure"]


class Structure(NamedTuple):
    """Atoms in a periodic cell.

    Attributes:
        lattice: ``[3, 3]`` cell vectors as rows, Å.
        frac_coords: ``[M, 3]`` fractional coordinates in ``[0, 1)``.
        species: ``M`` element symbols.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    species: tuple[str, ...]


def lattice_matrix(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Cell vectors (rows) with ``a`` along x and ``b`` in the xy-plane; angles in degrees.

    >>> lattice_matrix(2.0, 2.0, 3.0, 90, 90, 90).tolist()
    [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
    """
    al, be, ga = np.radians([alpha, beta, gamma])
    bx, by = b * np.cos(ga), b * np.sin(ga)
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz2 = c * c - cx * cx - cy * cy
    if cz2 <= 0:
        raise ValueError(f"lattice parameters {(a, b, c, alpha, beta, gamma)} do not describe a cell")
    matrix = np.array([[a, 0.0, 0.0], [bx, by, 0.0], [cx, cy, np.sqrt(cz2)]])
    matrix[np.abs(matrix) < 1e-12] = 0.0
    return matrix


def lattice_parameters(lattice) -> tuple[float, float, float, float, float, float]:
    """``(a, b, c, alpha, beta, gamma)`` of cell vectors given as rows (Å, degrees).

    >>> [round(v, 6) for v in lattice_parameters(lattice_matrix(3.0, 3.0, 5.0, 90, 90, 120))]
    [3.0, 3.0, 5.0, 90.0, 90.0, 120.0]
    """
    vectors = np.asarray(lattice, np.float64)
    lengths = np.linalg.norm(vectors, axis=1)

    def angle(i: int, j: int) -> float:
        cos = np.dot(vectors[i], vectors[j]) / (lengths[i] * lengths[j])
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    return (*(float(v) for v in lengths), angle(1, 2), angle(0, 2), angle(0, 1))


def to_structure(crystal: Crystal, *, tol: float = 1e-4) -> Structure:
    """All atoms of the conventional cell: every site's orbit under the space group's operations.

    A free coordinate on a special value (e.g. ``x = 0`` of ``x, 0, 0``) gives a smaller orbit than
    the multiplicity; coincident points closer than ``tol`` are merged.

    >>> s = to_structure(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))
    >>> len(s.species), float(s.lattice[0, 0])
    (8, 5.64)
    """
    coords, species = [], []
    for site in crystal.sites:
        points = orbit(crystal.space_group, site.letter, site.coordinates, tol=tol)
        coords.append(points)
        species += [site.element] * len(points)
    return Structure(lattice_matrix(*crystal.lattice), np.concatenate(coords), tuple(species))


def from_structure(lattice, frac_coords, species, *, symprec: float = 1e-3, angle_tolerance: float = -1.0) -> Crystal:
    """Find the space group, Wyckoff sites and conventional lattice of a structure with spglib.

    The structure is symmetrised and standardised by spglib in the setting of these tables
    (``hall_number``); sites come sorted by Wyckoff letter, then element and coordinates.

    >>> lattice = 3.9 * np.eye(3)
    >>> frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    >>> from_structure(lattice, frac, ["Sr", "Ti", "O", "O", "O"]).to_string()
    '221-a-Sr-b-Ti-c-O-X-3.9'
    """
    import spglib

    unknown = [s for s in species if s not in ELEMENTS]
    if unknown:
        raise ValueError(f"unknown element symbols {unknown}")
    numbers = [ELEMENTS.index(s) + 1 for s in species]
    cell = (np.asarray(lattice, np.float64), np.asarray(frac_coords, np.float64), numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        first = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
        if first is None:
            raise ValueError(f"spglib found no symmetry for this structure (symprec={symprec})")
        g = int(first.number)
        data = spglib.get_symmetry_dataset(
            cell, symprec=symprec, angle_tolerance=angle_tolerance, hall_number=hall_number(g)
        )
    positions = np.mod(np.asarray(data.std_positions), 1.0)
    types = np.asarray(data.std_types)
    rotations, translations = general_positions(g)
    assigned = np.zeros(len(positions), bool)
    sites = []
    for start in range(len(positions)):
        if assigned[start]:
            continue
        images = np.mod(rotations @ positions[start] + translations, 1.0)
        distance = np.abs((images[:, None, :] - positions[None, :, :] + 0.5) % 1.0 - 0.5).max(axis=-1)
        members = np.flatnonzero((distance < 10 * symprec).any(axis=0) & (types == types[start]))
        assigned[members] = True
        letter, coords = _wyckoff_site(g, images, len(members), 10 * symprec)
        sites.append(Site(letter, ELEMENTS[types[start] - 1], coords))
    order = wyckoff_letters(g)
    sites.sort(key=lambda s: (order.index(s.letter), ELEMENTS.index(s.element), s.coordinates))
    return Crystal(g, tuple(sites), lattice_parameters(data.std_lattice))


def _wyckoff_site(g: int, images: np.ndarray, size: int, tol: float) -> tuple[str, tuple[float, ...]]:
    for w, (letter, mult) in enumerate(zip(wyckoff_letters(g), multiplicities(g))):
        if mult != size:
            continue
        rep_r, rep_t, rows = _solver(g, w)
        candidates = []
        for image in images:
            params = np.zeros(3)
            for symbol, row in rows:
                params[symbol] = rep_r[row, symbol] * (image[row] - rep_t[row])
            params = np.mod(params, 1.0)
            residual = (rep_r @ params + rep_t - image + 0.5) % 1.0 - 0.5
            if np.all(np.abs(residual) < tol):
                values = tuple(float(np.round(params[s], 6) % 1.0) for s, _ in rows)
                candidates.append(values)
        if candidates:
            return letter, min(candidates)
    raise ValueError(f"no Wyckoff position of space group {g} with multiplicity {size} matches the orbit {images[0]}")


@functools.cache
def _solver(g: int, w: int):
    rep_r, rep_t = parse_affine(", ".join(representatives(g)[w]))
    rows = []
    for name in free_coordinates(g)[w]:
        s = "xyz".index(name)
        row = next(i for i in range(3) if abs(rep_r[i, s]) == 1 and np.count_nonzero(rep_r[i]) == 1)
        rows.append((s, row))
    return rep_r, rep_t, tuple(rows)
