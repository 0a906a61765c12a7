"""A mixed token/continuous encoding of Wyckoff descriptions: discrete skeleton first, then geometry.

A crystal with at most ``S = max_sites`` sites is a float sequence of ``N = 5S + 7`` positions:

* ``0``: the space group (a token);
* ``1 + 2s``, ``2 + 2s`` for ``s < S``: site ``s``'s Wyckoff letter and element (tokens; the slot
  after the last site holds ``END``, later slots ``PAD``);
* ``1 + 2S + 3s + k``, ``k < 3``: the ``k``-th *truly free* coordinate of site ``s`` (a fraction on
  the circle, ``VonMisesMixture``), in the order of ``free_coordinates``; a letter such as
  ``x, x, z`` has two, so its third slot is off (a point mass at 0), and ``x, x, x`` has one;
* ``1 + 5S + j``, ``j < 6``: the lattice as ``b/a, c/a`` (``LogNormalMixture``: positive),
  ``alpha, beta, gamma`` (degrees, ``LogitNormalMixture`` on ``(0, 180)``; ``gamma`` an
  ``IntervalLogitNormalMixture`` on the angles that close a cell with the drawn ``alpha, beta``)
  and last the scale ``a`` (Å); the ones the crystal system fixes (``b = c = a`` and right angles of a cubic cell, …)
  are off. With everything else drawn, every distance in the cell is proportional to ``a``, so
  "no two atoms closer than ``min_separation``, volume at least ``min_volume``" is exactly
  ``a ≥ a_min(prefix)``: with ``min_separation`` set, ``a`` is a ``TruncatedLogNormalMixture`` cut
  at that bound and every crystal the model draws is structurally valid.

Tokens share one vocabulary ``PAD, END, groups, letters, elements``; they are stored as exact
integers in the float array. Every continuous slot but a cut scale is ``Gated``: the crystal net turns it on from
the prefix (the group and the site's letter), so the density is over the free coordinates and
free lattice parameters only. Putting the skeleton first makes its probability
``p(group, letters, elements)`` an exact product of the first ``2S + 1`` conditionals.
"""

import functools
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float

from arjax.crystal.errors import CrystalError
from arjax.crystal.families import Gated, IntervalLogitNormalMixture, LogitNormalMixture, TruncatedLogNormalMixture
from arjax.crystal.notation import ELEMENTS, Crystal, Site, check_vocabulary, element_cap, full_lattice, parse_crystal
from arjax.crystal.wyckoff import (
    LETTERS,
    free_coordinates,
    lattice_parameter_names,
    multiplicities,
    num_free_coordinates,
    wyckoff_letters,
)
from arjax.families import Categorical, LogNormalMixture, VonMisesMixture

__all__ = ["CrystalEncoder", "PAD", "END", "LATTICE_SLOTS"]

PAD, END = 0, 1
LATTICE_SLOTS = ("b/a", "c/a", "alpha", "beta", "gamma", "a")
_OFF = (1.0, 1.0, 90.0, 90.0, 90.0, None)


class CrystalEncoder:
    """Vocabulary, layout, families, encoder and decoder of the mixed crystal sequence (module docstring).

    Args:
        space_groups: the groups in the vocabulary (default all 230).
        elements: the element symbols in the vocabulary (default H..Og), kept in periodic order.
        max_sites: ``S``, most Wyckoff sites per crystal.
        max_atoms: most atoms per conventional cell (``None``: no cap).
        max_elements: most distinct elements per crystal (``None``: no cap).
        coordinate_components: von Mises components per free coordinate.
        coordinate_frequencies: Fourier frequencies of a coordinate entering the net.
        lattice_components: mixture components per lattice parameter.
        min_separation: closest distance (Å) two distinct atoms may have; with it the scale ``a``
            is cut below at the smallest value that keeps every pair that far apart and the
            volume at least ``min_volume`` (``None``: no cut).
        min_volume: smallest cell volume (Å³) with ``min_separation`` set.

    Example:
        >>> enc = CrystalEncoder(space_groups=[221, 225], elements=["Na", "Cl"], max_sites=3, max_atoms=8)
        >>> x = enc.encode("225-a-Na-b-Cl-X-5.64")
        >>> enc.num_positions, x[:8].tolist(), float(x[enc.scale_position])
        (22, [3.0, 4.0, 18.0, 5.0, 19.0, 1.0, 0.0, 0.0], 5.64)
        >>> enc.decode(x).to_string()
        '225-a-Na-b-Cl-X-5.64'
    """

    def __init__(
        self,
        *,
        space_groups: Sequence[int] | None = None,
        elements: Sequence[str] | None = None,
        max_sites: int = 8,
        max_atoms: int | None = None,
        max_elements: int | None = None,
        coordinate_components: int = 16,
        coordinate_frequencies: int = 5,
        lattice_components: int = 4,
        min_separation: float | None = None,
        min_volume: float = 0.1,
    ):
        groups, elements = check_vocabulary(space_groups, elements)
        for name, value in (
            ("max_sites", max_sites),
            ("coordinate_components", coordinate_components),
            ("coordinate_frequencies", coordinate_frequencies),
            ("lattice_components", lattice_components),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        cap = max_sites * 192 if max_atoms is None else max_atoms
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise ValueError(f"max_atoms must be a positive int or None, got {max_atoms!r}")
        for name, value in (("min_separation", min_separation), ("min_volume", min_volume)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < float("inf")):  # fmt: skip
                raise ValueError(f"{name} must be a finite number > 0{' or None' * (name == 'min_separation')}, "
                                 f"got {value!r}")  # fmt: skip
        blocked = [g for g in groups if min(multiplicities(g)) > cap]
        if blocked:
            raise ValueError(f"max_atoms={max_atoms} is below the smallest multiplicity of space groups {blocked}")
        self.space_groups = groups
        self.elements = tuple(sorted(elements, key=ELEMENTS.index))
        self.max_sites = max_sites
        self.max_atoms = max_atoms
        self.atom_cap = cap
        self.max_elements = max_elements
        self.element_cap = element_cap(max_elements, self.elements)
        self.coordinate_components = coordinate_components
        self.coordinate_frequencies = coordinate_frequencies
        self.lattice_components = lattice_components
        self.min_separation = None if min_separation is None else float(min_separation)
        self.min_volume = float(min_volume)
        self.num_letters = max(len(wyckoff_letters(g)) for g in groups)
        self.group_start = 2
        self.letter_start = self.group_start + len(groups)
        self.element_start = self.letter_start + self.num_letters
        self.num_categories = self.element_start + len(self.elements)
        self.coordinate_start = 1 + 2 * max_sites
        self.lattice_start = 1 + 5 * max_sites
        self.scale_position = self.lattice_start + 5
        self.num_positions = self.lattice_start + 6

    @classmethod
    def for_crystals(cls, crystals, **kwargs) -> "CrystalEncoder":
        """An encoder whose groups, elements, site and atom caps fit ``crystals`` (objects or strings).

        >>> enc = CrystalEncoder.for_crystals(["221-a-Sr-b-Ti-c-O-X-3.9", "225-a-Na-b-Cl-X-5.64"])
        >>> enc.space_groups, enc.elements, enc.max_sites, enc.max_atoms
        ((221, 225), ('O', 'Na', 'Cl', 'Ti', 'Sr'), 3, 8)
        """
        crystals = [c if isinstance(c, Crystal) else parse_crystal(c) for c in crystals]
        options = {
            "space_groups": sorted({c.space_group for c in crystals}),
            "elements": sorted({s.element for c in crystals for s in c.sites}, key=ELEMENTS.index),
            "max_sites": max(len(c.sites) for c in crystals),
            "max_atoms": max(c.num_atoms for c in crystals),
        }
        options.update(kwargs)
        return cls(**options)

    @property
    def config(self) -> tuple:
        """The constructor arguments, as a hashable tuple."""
        return (
            self.space_groups,
            self.elements,
            self.max_sites,
            self.max_atoms,
            self.max_elements,
            self.coordinate_components,
            self.coordinate_frequencies,
            self.lattice_components,
            self.min_separation,
            self.min_volume,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, CrystalEncoder) and self.config == other.config

    def __hash__(self) -> int:
        return hash(("CrystalEncoder", self.config))

    def __repr__(self) -> str:
        return (
            f"CrystalEncoder({len(self.space_groups)} groups, {len(self.elements)} elements, "
            f"max_sites={self.max_sites}, max_atoms={self.max_atoms}, "
            + (f"max_elements={self.max_elements}, " if self.max_elements is not None else "")
            + f"min_separation={self.min_separation}, "
            f"num_positions={self.num_positions}, "
            f"num_categories={self.num_categories})"
        )

    # ---------------------------------------------------------------------------------- layout
    @functools.cached_property
    def families(self) -> tuple:
        """One family per position: ``Categorical(K)`` for tokens, ``Gated`` mixtures for the geometry, and for
        the scale ``a`` a ``TruncatedLogNormalMixture`` when ``min_separation`` is set."""
        m = self.lattice_components
        token = Categorical(self.num_categories)
        circle = VonMisesMixture(self.coordinate_components, num_frequencies=self.coordinate_frequencies)
        coordinate = Gated(circle, 0.0)
        ratio = Gated(LogNormalMixture(m), 1.0)
        angle = Gated(LogitNormalMixture(m, low=0.0, high=180.0), 90.0)
        gamma = Gated(IntervalLogitNormalMixture(m, low=0.0, high=180.0), 90.0)
        scale = Gated(LogNormalMixture(m), 1.0) if self.min_separation is None else TruncatedLogNormalMixture(m)
        return (
            (token,) * (1 + 2 * self.max_sites)
            + (coordinate,) * (3 * self.max_sites)
            + (ratio,) * 2
            + (angle,) * 2
            + (gamma,)
            + (scale,)
        )

    @property
    def letter_positions(self) -> np.ndarray:
        """Positions of the sites' Wyckoff letters (``1 + 2s``)."""
        return 1 + 2 * np.arange(self.max_sites)

    @property
    def element_positions(self) -> np.ndarray:
        """Positions of the sites' elements (``2 + 2s``)."""
        return 2 + 2 * np.arange(self.max_sites)

    @property
    def skeleton_positions(self) -> np.ndarray:
        """The token positions: group, letters, elements (``0 … 2S``)."""
        return np.arange(self.coordinate_start)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Readable name of every token: ``'<pad>'``, ``'X'`` (end), ``'sg:225'``, ``'w:a'``, ``'el:La'``."""
        return (
            ("<pad>", "X")
            + tuple(f"sg:{g}" for g in self.space_groups)
            + tuple(f"w:{letter}" for letter in LETTERS[: self.num_letters])
            + tuple(f"el:{e}" for e in self.elements)
        )

    @functools.cached_property
    def tables(self) -> dict[str, np.ndarray]:
        """Per vocabulary group (rows) and letter (columns): ``mult``, ``valid``, ``free`` counts; ``lattice``: which
        of the slots ``LATTICE_SLOTS`` the crystal system leaves free."""
        shape = (len(self.space_groups), self.num_letters)
        mult, valid, free = np.zeros(shape, np.int32), np.zeros(shape, bool), np.zeros(shape, np.int32)
        lattice = np.zeros((len(self.space_groups), 6), bool)
        for j, g in enumerate(self.space_groups):
            m = multiplicities(g)
            mult[j, : len(m)] = m
            valid[j, : len(m)] = True
            free[j, : len(m)] = num_free_coordinates(g)
            names = lattice_parameter_names(g)
            lattice[j] = [slot.split("/")[0] in names for slot in LATTICE_SLOTS]
        return {"mult": mult, "valid": valid, "free": free, "lattice": lattice}

    @property
    def allowed(self):
        """The grammar as a prefix rule ``allowed(x, i) -> Bool[K]`` for ``arjax.Autoregressive``."""
        from arjax.crystal.encoder_grammar import EncoderGrammar

        return EncoderGrammar(self)

    # --------------------------------------------------------------------------- encode/decode
    def encode(self, crystal: Crystal | str, *, name: str | None = None) -> Float[np.ndarray, " N"]:
        """The float sequence of a crystal (or its string); sites sorted by letter, element, coordinates.

        Raises ``CrystalError`` naming the crystal (``name``, else its string) when it does not fit
        the vocabulary: group, element, number of sites, atoms or distinct elements over the cap,
        lattice out of range.

        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> enc.encode("225-a-Na-b-K-X-5.64", name="KNa")
        Traceback (most recent call last):
        ...
        arjax.crystal.errors.CrystalError: crystal KNa: element 'K' of site 225b is not in the vocabulary (Cl, Na)
        """
        if isinstance(crystal, str):
            crystal = parse_crystal(crystal)
        label = name if name is not None else crystal.to_string()
        g = crystal.space_group

        def fail(kind: str, reason: str):
            raise CrystalError(label, reason, kind=kind)

        if g not in self.space_groups:
            fail("space group outside the vocabulary",
                 f"space group {g} is not in the vocabulary ({len(self.space_groups)} groups)")
        letters = wyckoff_letters(g)
        for site in crystal.sites:
            if site.element not in self.elements:
                known = ", ".join(sorted(self.elements)[:8]) + (", …" if len(self.elements) > 8 else "")
                fail("element outside the vocabulary",
                     f"element {site.element!r} of site {g}{site.letter} is not in the vocabulary ({known})")
        if len(crystal.sites) > self.max_sites:
            fail("too many sites", f"{len(crystal.sites)} Wyckoff sites, more than max_sites={self.max_sites}")
        if crystal.num_atoms > self.atom_cap:
            fail("too many atoms",
                 f"{crystal.num_atoms} atoms in the conventional cell, more than max_atoms={self.atom_cap}")
        distinct = {site.element for site in crystal.sites}
        if len(distinct) > self.element_cap:
            fail("too many elements", f"{len(distinct)} distinct elements, more than max_elements={self.element_cap}")
        a, b, c, alpha, beta, gamma = crystal.lattice
        if not min(a, b, c) > 0 or not all(0 < v < 180 for v in (alpha, beta, gamma)):
            fail("lattice out of range", f"lattice {crystal.lattice} has a length <= 0 or an angle outside (0, 180)")
        if not _closes_cell(alpha, beta, gamma):
            fail("lattice out of range", f"the angles of lattice {crystal.lattice} describe no cell "
                                         "(need |alpha - beta| < gamma < min(alpha + beta, 360 - alpha - beta))")

        def order(site: Site) -> tuple:
            coordinates = tuple(v % 1.0 for v in site.coordinates)
            return letters.index(site.letter), self.elements.index(site.element), coordinates

        sites = sorted(crystal.sites, key=order)
        x = np.zeros(self.num_positions)
        x[0] = self.group_start + self.space_groups.index(g)
        for s, site in enumerate(sites):
            x[1 + 2 * s] = self.letter_start + letters.index(site.letter)
            x[2 + 2 * s] = self.element_start + self.elements.index(site.element)
            for k, value in enumerate(site.coordinates):
                x[self.coordinate_start + 3 * s + k] = float(value) % 1.0
        if len(sites) < self.max_sites:
            x[1 + 2 * len(sites)] = END
        on = self.tables["lattice"][self.space_groups.index(g)]
        values = [b / a, c / a, alpha, beta, gamma, a]
        x[self.lattice_start :] = [v if free else off for v, free, off in zip(values, on, _OFF)]
        return x

    def encode_batch(self, crystals, names: Sequence[str] | None = None) -> Float[np.ndarray, "M N"]:
        """Stack ``encode`` over crystals or strings (``names`` label them in errors).

        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> enc.encode_batch(["225-a-Na-b-Cl-X-5.6"] * 3).shape
        (3, 17)
        """
        crystals = list(crystals)
        names = [None] * len(crystals) if names is None else list(names)
        return np.stack([self.encode(c, name=n) for c, n in zip(crystals, names)])

    def decode(self, x) -> Crystal:
        """The crystal of a sequence; a sequence outside the grammar raises naming the first bad position.

        Coordinates are reduced modulo 1; the parameters a crystal system fixes are filled in
        (``full_lattice``), so the decoded atoms lie exactly on the Wyckoff orbits.

        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> enc.decode(enc.encode("225-e-Cl-0.25-a-Na-X-5.6")).to_string()
        '225-a-Na-e-Cl-0.25-X-5.6'
        """
        x = np.asarray(x, np.float64)
        if x.shape != (self.num_positions,):
            raise ValueError(f"x must have shape ({self.num_positions},), got {x.shape}")
        names = self.vocabulary

        def token(i: int, lo: int, hi: int, what: str) -> int:
            value = x[i]
            if value != round(value) or not lo <= value < hi:
                got = repr(names[int(value)]) if value == round(value) and 0 <= value < len(names) else f"{value:g}"
                raise ValueError(f"position {i}: {got} is not allowed here; expected {what}")
            return int(value) - lo

        j = token(0, self.group_start, self.letter_start, "a space group of the vocabulary")
        g = self.space_groups[j]
        letters, mult, free = wyckoff_letters(g), multiplicities(g), free_coordinates(g)
        sites, last, last_element, atoms, ended = [], -1, -1, 0, False
        for s in range(self.max_sites):
            i = 1 + 2 * s
            if ended or (x[i] == END and s > 0):
                expected = PAD if ended else END
                if x[i] != expected or x[i + 1] != PAD:
                    raise ValueError(f"positions {i}, {i + 1}: after the last site expected {names[expected]!r} "
                                     f"and '<pad>', got {x[i]:g}, {x[i + 1]:g}")  # fmt: skip
                ended = True
                continue
            w = token(i, self.letter_start, self.element_start, f"a Wyckoff letter of space group {g}")
            fixed_last = last >= 0 and not free[last]
            if w >= len(letters) or w < last + fixed_last or atoms + mult[w] > self.atom_cap:
                reason = (
                    f"space group {g} has letters {''.join(letters)}" if w >= len(letters)
                    else f"letters must not decrease and one without free coordinates appears once; "
                    f"'{LETTERS[w]}' follows '{LETTERS[last]}'" if w < last + fixed_last
                    else f"site {g}{LETTERS[w]} brings the cell to {atoms + mult[w]} atoms > max_atoms={self.atom_cap}"
                )  # fmt: skip
                raise ValueError(f"position {i}: {reason}")
            e = token(i + 1, self.element_start, self.num_categories, "an element")
            used = {site.element for site in sites}
            if self.elements[e] not in used and len(used) == self.element_cap:
                raise ValueError(f"position {i + 1}: {self.elements[e]} would be element {self.element_cap + 1}, "
                                 f"more than max_elements={self.element_cap}")  # fmt: skip
            if w == last and e < last_element:
                raise ValueError(f"position {i + 1}: sites on the same letter come in element order; "
                                 f"{self.elements[e]} follows {self.elements[last_element]}")  # fmt: skip
            coords = []
            for k in range(3):
                value = x[self.coordinate_start + 3 * s + k]
                if k >= len(free[w]) and value != 0.0:
                    raise ValueError(f"position {self.coordinate_start + 3 * s + k}: site {g}{LETTERS[w]} has "
                                     f"{len(free[w])} free coordinates, this slot must be 0, "
                                     f"got {value:g}")  # fmt: skip
                if k < len(free[w]):
                    coords.append(float(value) % 1.0)
            sites.append(Site(LETTERS[w], self.elements[e], tuple(coords)))
            last, last_element, atoms = w, e, atoms + mult[w]
        lattice = x[self.lattice_start :]
        on = self.tables["lattice"][j]
        given = {}
        for k, name in enumerate(LATTICE_SLOTS):
            value = lattice[k]
            if not on[k]:
                if value != _OFF[k]:
                    raise ValueError(f"position {self.lattice_start + k}: lattice parameter {name} is fixed by the "
                                     f"crystal system of space group {g}, got {value:g}")  # fmt: skip
                continue
            if not (value > 0 and (name not in ("alpha", "beta", "gamma") or value < 180)):
                raise ValueError(f"position {self.lattice_start + k}: lattice parameter {name} = {value:g} "
                                 "is out of range")
            given[name] = float(value)
        angles = [given.get(name, 90.0) for name in ("alpha", "beta", "gamma")]
        if not _closes_cell(*angles):
            raise ValueError(f"positions {self.lattice_start + 2}-{self.lattice_start + 4}: the angles "
                             f"{', '.join(f'{v:g}' for v in angles)} describe no cell (need |alpha - beta| < gamma "
                             "< min(alpha + beta, 360 - alpha - beta))")
        a = given["a"]
        given.update({length: a * given[f"{length}/a"] for length in "bc" if f"{length}/a" in given})
        return Crystal(g, tuple(sites), full_lattice(g, [given[name] for name in lattice_parameter_names(g)]))


def _closes_cell(alpha: float, beta: float, gamma: float) -> bool:
    """Whether three cell angles (degrees, each in ``(0, 180)``) belong to a cell of positive volume."""
    return abs(alpha - beta) < gamma < min(alpha + beta, 360.0 - alpha - beta)
