"""Wyckoff positions of the 230 space groups (International Tables, standard settings as in PyXtal).

Letters run ``a, b, …, z, A`` from the most special position to the general one. Each letter has a
multiplicity (atoms per conventional cell), a symbolic first orbit representative such as
``('x', '1/4', '1/4')`` and the free coordinates that representative uses (``('x',)``). Letters
without free coordinates are single points per orbit and can hold at most one site.

The tables load lazily from ``arjax/crystal/data/wyckoff.json.gz`` (derived by
``scripts/derive_crystal_data.py`` from PyXtal's ``wyckoff_list.csv``, MIT licence).
"""

import functools
import gzip
import json
import re
from fractions import Fraction
from importlib import resources

import numpy as np

__all__ = [
    "LETTERS",
    "CRYSTAL_SYSTEMS",
    "crystal_system",
    "fixed_letters",
    "free_coordinates",
    "general_positions",
    "hall_number",
    "lattice_parameter_names",
    "multiplicities",
    "num_free_coordinates",
    "orbit",
    "parse_affine",
    "representative",
    "representatives",
    "wyckoff_letters",
]

LETTERS = "abcdefghijklmnopqrstuvwxyzA"
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
_SYSTEM_BOUNDS = (2, 15, 74, 142, 167, 194, 230)
_LATTICE_NAMES = {
    "triclinic": ("a", "b", "c", "alpha", "beta", "gamma"),
    "monoclinic": ("a", "b", "c", "beta"),
    "orthorhombic": ("a", "b", "c"),
    "tetragonal": ("a", "c"),
    "trigonal": ("a", "c"),
    "hexagonal": ("a", "c"),
    "cubic": ("a",),
}
_TERM = re.compile(r"([+-]?)(\d+(?:/\d+)?)?([xyz])?")


def multiplicities(g: int) -> tuple[int, ...]:
    """Multiplicities of the Wyckoff positions of space group ``g``, in letter order ``a, b, …``.

    >>> multiplicities(221)[:4]
    (1, 1, 3, 3)
    """
    return tuple(len(orbit_ops) for orbit_ops in _group(g)["orbits"])


def wyckoff_letters(g: int) -> tuple[str, ...]:
    """The Wyckoff letters of space group ``g``: ``a, b, …`` up to the general position.

    >>> wyckoff_letters(2)
    ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i')
    """
    return tuple(LETTERS[: len(_group(g)["orbits"])])


def representatives(g: int) -> tuple[tuple[str, str, str], ...]:
    """The symbolic first orbit representative of every Wyckoff position of ``g``, in letter order.

    >>> representatives(225)[6]
    ('x', '1/4', '1/4')
    """
    return tuple(tuple(p.strip() for p in ops[0].split(",")) for ops in _group(g)["orbits"])


def representative(g: int, letter: str) -> tuple[str, str, str]:
    """The symbolic first orbit representative of Wyckoff position ``letter`` of space group ``g``.

    >>> representative(225, "e")
    ('x', '0', '0')
    """
    return representatives(g)[letter_index(g, letter)]


def free_coordinates(g: int) -> tuple[tuple[str, ...], ...]:
    """For each letter of ``g``, the free coordinates (subset of ``x, y, z``) of its representative.

    >>> free_coordinates(6)
    (('x', 'z'), ('x', 'z'), ('x', 'y', 'z'))
    """
    return tuple(tuple(s for s in "xyz" if s in "".join(rep)) for rep in representatives(g))


def num_free_coordinates(g: int) -> tuple[int, ...]:
    """Number of free coordinates of each Wyckoff position of ``g``, in letter order.

    >>> num_free_coordinates(221)[:6]
    (0, 0, 0, 0, 1, 1)
    """
    return tuple(len(free) for free in free_coordinates(g))


def fixed_letters(g: int) -> tuple[str, ...]:
    """Letters of ``g`` without free coordinates; each can hold at most one site.

    >>> fixed_letters(225)
    ('a', 'b', 'c', 'd')
    """
    return tuple(letter for letter, n in zip(wyckoff_letters(g), num_free_coordinates(g)) if n == 0)


def hall_number(g: int) -> int:
    """spglib's Hall number of the setting these tables use (origin choice 2 where there are two).

    >>> hall_number(227)
    526
    """
    return int(_group(g)["hall"])


def crystal_system(g: int) -> str:
    """The crystal system of space group ``g``.

    >>> crystal_system(62), crystal_system(166)
    ('orthorhombic', 'trigonal')
    """
    _check_group(g)
    return CRYSTAL_SYSTEMS[next(k for k, bound in enumerate(_SYSTEM_BOUNDS) if g <= bound)]


def lattice_parameter_names(g: int) -> tuple[str, ...]:
    """The free lattice parameters of ``g``'s crystal system (conventional cell, unique axis b).

    >>> lattice_parameter_names(225), lattice_parameter_names(12)
    (('a',), ('a', 'b', 'c', 'beta'))
    """
    return _LATTICE_NAMES[crystal_system(g)]


def general_positions(g: int) -> tuple[np.ndarray, np.ndarray]:
    """The general position of ``g`` as affine operations ``(R[M, 3, 3], t[M, 3])``, centring included.

    >>> rotations, translations = general_positions(225)
    >>> rotations.shape, translations.shape
    ((192, 3, 3), (192, 3))
    """
    return _general(g)


def orbit(g: int, letter: str, coordinates=(), *, tol: float = 1e-4) -> np.ndarray:
    """Fractional coordinates in ``[0, 1)`` of the orbit of ``letter`` for the given free coordinates.

    ``coordinates`` holds the values of ``free_coordinates(g)[letter]`` in order (``x, y, z``).
    Points closer than ``tol`` (periodically) are merged, so a free coordinate on a special value
    gives fewer points than the multiplicity.

    >>> orbit(225, "c").tolist()[:2]
    [[0.25, 0.25, 0.25], [0.75, 0.75, 0.25]]
    """
    w = letter_index(g, letter)
    free = free_coordinates(g)[w]
    coordinates = tuple(float(c) for c in coordinates)
    if len(coordinates) != len(free):
        raise ValueError(
            f"Wyckoff position {g}{letter} has free coordinates {free}, got {len(coordinates)} values {coordinates}"
        )
    params = np.zeros(3)
    for name, value in zip(free, coordinates):
        params["xyz".index(name)] = value
    rep_r, rep_t = parse_affine(", ".join(representatives(g)[w]))
    point = rep_r @ params + rep_t
    rotations, translations = general_positions(g)
    images = np.mod(rotations @ point + translations, 1.0)
    images[np.isclose(images, 1.0, atol=tol)] = 0.0
    close = np.all(np.abs((images[:, None] - images[None, :] + 0.5) % 1.0 - 0.5) < tol, axis=-1)
    first = ~np.any(np.tril(close, k=-1), axis=1)
    return images[first]


def parse_affine(xyz: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse an operation or position such as ``'-y+1/2, x, 2z'`` into ``(R[3, 3], t[3])``.

    >>> r, t = parse_affine("-y+1/2, x, z")
    >>> r.tolist(), t.tolist()
    ([[0, -1, 0], [1, 0, 0], [0, 0, 1]], [0.5, 0.0, 0.0])
    """
    rows = xyz.split(",")
    if len(rows) != 3:
        raise ValueError(f"expected three comma-separated components, got {xyz!r}")
    r = np.zeros((3, 3), np.int64)
    t = np.zeros(3)
    for i, row in enumerate(rows):
        text = row.replace(" ", "")
        pos = 0
        while pos < len(text):
            match = _TERM.match(text, pos)
            sign, number, symbol = match.groups()
            if match.end() == pos or (number is None and symbol is None):
                raise ValueError(f"cannot parse component {row.strip()!r} of {xyz!r}")
            factor = -1 if sign == "-" else 1
            if symbol:
                r[i, "xyz".index(symbol)] += factor * (int(number) if number else 1)
            else:
                t[i] += factor * float(Fraction(number))
            pos = match.end()
    return r, t


def letter_index(g: int, letter: str) -> int:
    """Position of ``letter`` in ``wyckoff_letters(g)``; raises if ``g`` has no such letter.

    >>> letter_index(225, "c")
    2
    """
    letters = wyckoff_letters(g)
    if not isinstance(letter, str) or letter not in letters:
        raise ValueError(f"space group {g} has Wyckoff letters {''.join(letters)}, got {letter!r}")
    return letters.index(letter)


def _check_group(g) -> int:
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 1 <= g <= 230:
        raise ValueError(f"space group must be an integer in 1..230, got {g!r}")
    return int(g)


@functools.cache
def _tables() -> dict:
    with resources.files("arjax.crystal").joinpath("data/wyckoff.json.gz").open("rb") as f:
        return json.loads(gzip.decompress(f.read()))


def _group(g) -> dict:
    return _tables()["groups"][_check_group(g) - 1]


@functools.cache
def _general(g: int) -> tuple[np.ndarray, np.ndarray]:
    ops = [parse_affine(op) for op in _group(g)["orbits"][-1]]
    rotations = np.stack([r for r, _ in ops])
    translations = np.stack([t for _, t in ops])
    rotations.flags.writeable = False
    translations.flags.writeable = False
    return rotations, translations
