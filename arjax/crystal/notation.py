"""Crystals as Wyckoff descriptions and their readable string form ``"221-a-Sr-b-Ti-d-O-X-3.9"``.

A string lists, separated by ``-``: the space group; per site its Wyckoff letter, element and the
values of the letter's free coordinates (``x``, ``y``, ``z`` in that order, fractions of the
conventional cell); ``X`` (end of sites); then the free lattice parameters of the crystal system
(``lattice_parameter_names``): lengths in Å, angles in degrees.
"""

import dataclasses
import math
from fractions import Fraction

from arjax.crystal.wyckoff import (
    crystal_system,
    free_coordinates,
    lattice_parameter_names,
    letter_index,
    multiplicities,
    wyckoff_letters,
)

__all__ = ["ELEMENTS", "END", "Crystal", "Site", "check_vocabulary", "element_cap", "full_lattice", "parse_crystal"]

END = "X"
ELEMENTS = tuple(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr "
    "Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir "
    "Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl "
    "Mc Lv Ts Og".split()
)
_LATTICE_INDEX = {"a": 0, "b": 1, "c": 2, "alpha": 3, "beta": 4, "gamma": 5}


@dataclasses.dataclass(frozen=True)
class Site:
    """One symmetry-inequivalent site: a Wyckoff letter, an element and the letter's free coordinates."""

    letter: str
    element: str
    coordinates: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Crystal:
    """A crystal described by its space group, Wyckoff sites and conventional lattice.

    Attributes:
        space_group: international number, 1..230.
        sites: the occupied Wyckoff positions.
        lattice: ``(a, b, c, alpha, beta, gamma)`` of the conventional cell, Å and degrees.

    Example:
        >>> c = Crystal.from_string("221-a-Sr-b-Ti-c-O-X-3.905")
        >>> c.num_atoms, c.composition
        (5, {'Sr': 1, 'Ti': 1, 'O': 3})
        >>> c.to_string()
        '221-a-Sr-b-Ti-c-O-X-3.905'
    """

    space_group: int
    sites: tuple[Site, ...]
    lattice: tuple[float, float, float, float, float, float]

    @classmethod
    def from_string(cls, text: str) -> "Crystal":
        """Parse a string such as ``"225-a-Na-b-Cl-X-5.64"`` (see ``parse_crystal``)."""
        return parse_crystal(text)

    def to_string(self, *, digits: int = 4) -> str:
        """The readable form, numbers rounded to ``digits`` decimals (trailing zeros dropped)."""
        parts = [str(self.space_group)]
        for site in self.sites:
            parts += [site.letter, site.element, *(_number(round(v, digits) % 1.0, digits) for v in site.coordinates)]
        parts.append(END)
        names = lattice_parameter_names(self.space_group)
        parts += [_number(self.lattice[_LATTICE_INDEX[name]], digits) for name in names]
        return "-".join(parts)

    @property
    def multiplicities(self) -> tuple[int, ...]:
        """Atoms per conventional cell of each site."""
        mult = multiplicities(self.space_group)
        return tuple(mult[letter_index(self.space_group, site.letter)] for site in self.sites)

    @property
    def num_atoms(self) -> int:
        """Atoms in the conventional cell."""
        return sum(self.multiplicities)

    @property
    def composition(self) -> dict[str, int]:
        """Atoms per conventional cell of each element, in order of first appearance."""
        counts: dict[str, int] = {}
        for site, m in zip(self.sites, self.multiplicities):
            counts[site.element] = counts.get(site.element, 0) + m
        return counts

    def __str__(self) -> str:
        return self.to_string()


def check_vocabulary(space_groups, elements) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """A crystal vocabulary's space groups (default all 230) and element symbols (default ``ELEMENTS``), checked.

    >>> check_vocabulary([225, 221], ["O", "Ti"])
    ((225, 221), ('O', 'Ti'))
    """
    groups = tuple(range(1, 231)) if space_groups is None else tuple(int(g) for g in space_groups)
    if not groups or len(set(groups)) != len(groups) or not all(1 <= g <= 230 for g in groups):
        raise ValueError(f"space_groups must be distinct integers in 1..230, got {space_groups!r}")
    elements = ELEMENTS if elements is None else tuple(elements)
    unknown = [e for e in elements if e not in ELEMENTS]
    if unknown:
        raise ValueError(f"elements holds unknown element symbols {unknown}")
    if not elements or len(set(elements)) != len(elements):
        raise ValueError(f"elements must be a non-empty sequence of distinct symbols, got {elements}")
    return groups, elements


def element_cap(max_elements: int | None, elements: tuple[str, ...]) -> int:
    """The most distinct elements a crystal may hold: ``max_elements``, checked, or every element when ``None``.

    >>> element_cap(None, ("Na", "Cl")), element_cap(1, ("Na", "Cl"))
    (2, 1)
    """
    if max_elements is None:
        return len(elements)
    if not isinstance(max_elements, int) or isinstance(max_elements, bool) or max_elements < 1:
        raise ValueError(f"max_elements must be a positive int or None, got {max_elements!r}")
    return max_elements


def parse_crystal(text: str) -> Crystal:
    """Parse the readable form of a crystal; errors name the offending token and its position.

    Tokens are counted from 0 (the space group). Coordinates may be decimals or fractions such as
    ``1/4`` and are reduced modulo 1.

    >>> parse_crystal("225-a-Na-b-Cl-X-5.64").composition
    {'Na': 4, 'Cl': 4}
    >>> parse_crystal("225-a-Na-q-Cl-X-5.64")
    Traceback (most recent call last):
    ...
    ValueError: token 3 'q' in '225-a-Na-q-Cl-X-5.64': space group 225 has no Wyckoff letter 'q' (letters abcdefghijkl)
    """
    if not isinstance(text, str):
        raise TypeError(f"a crystal string must be a str, got {type(text).__name__}")
    tokens = [t.strip() for t in text.strip().split("-")]

    def fail(pos: int, message: str):
        if pos >= len(tokens):
            raise ValueError(f"{text!r} ends after token {len(tokens) - 1}: {message}")
        raise ValueError(f"token {pos} {tokens[pos]!r} in {text!r}: {message}")

    def number(pos: int, what: str) -> float:
        if pos >= len(tokens):
            fail(pos, f"expected {what}")
        try:
            value = float(Fraction(tokens[pos]))
        except (ValueError, ZeroDivisionError):
            fail(pos, f"expected {what}, got a token that is not a number")
        if not math.isfinite(value):
            fail(pos, f"expected {what}, got {value}")
        return value

    if not tokens[0].isdigit() or not 1 <= int(tokens[0]) <= 230:
        fail(0, "expected a space group number 1..230")
    g = int(tokens[0])
    letters, free, fixed_seen = wyckoff_letters(g), free_coordinates(g), set()
    sites, pos = [], 1
    while True:
        if pos >= len(tokens):
            fail(pos, f"expected a Wyckoff letter or the end token {END!r}")
        token = tokens[pos]
        if token == END:
            break
        if token not in letters:
            fail(pos, f"space group {g} has no Wyckoff letter {token!r} (letters {''.join(letters)})")
        w = letters.index(token)
        if not free[w]:
            if token in fixed_seen:
                fail(pos, f"Wyckoff position {g}{token} has no free coordinate and can hold only one site")
            fixed_seen.add(token)
        if pos + 1 >= len(tokens):
            fail(pos + 1, f"expected the element of site {g}{token}")
        if tokens[pos + 1] not in ELEMENTS:
            fail(pos + 1, "unknown element symbol")
        coords = tuple(
            number(pos + 2 + k, f"free coordinate {name} of site {g}{token}") % 1.0 for k, name in enumerate(free[w])
        )
        sites.append(Site(token, tokens[pos + 1], coords))
        pos += 2 + len(free[w])
    if not sites:
        fail(pos, "a crystal needs at least one site before the end token")
    names = lattice_parameter_names(g)
    values = []
    for k, name in enumerate(names):
        value = number(pos + 1 + k, f"lattice parameter {name} of a {crystal_system(g)} cell")
        if value <= 0 or (name in ("alpha", "beta", "gamma") and value >= 180):
            fail(pos + 1 + k, f"lattice parameter {name} = {value} is out of range")
        values.append(value)
    if pos + 1 + len(names) < len(tokens):
        fail(pos + 1 + len(names), f"unexpected token after the {len(names)} lattice parameters {names}")
    return Crystal(g, tuple(sites), full_lattice(g, values))


def full_lattice(g: int, values) -> tuple[float, float, float, float, float, float]:
    """``(a, b, c, alpha, beta, gamma)`` from the free lattice parameters of ``g``'s crystal system.

    >>> full_lattice(194, (3.2, 5.2))
    (3.2, 3.2, 5.2, 90.0, 90.0, 120.0)
    """
    names = lattice_parameter_names(g)
    values = tuple(float(v) for v in values)
    if len(values) != len(names):
        raise ValueError(f"space group {g} has free lattice parameters {names}, got {len(values)} values")
    given = dict(zip(names, values))
    a = given["a"]
    b = given.get("b", a)
    c = given.get("c", a)
    gamma = 120.0 if crystal_system(g) in ("trigonal", "hexagonal") else given.get("gamma", 90.0)
    return (a, b, c, given.get("alpha", 90.0), given.get("beta", 90.0), gamma)


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
