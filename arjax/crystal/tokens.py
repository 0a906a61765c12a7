"""A fully discrete tokenisation of Wyckoff descriptions with a fixed sequence length.

A sequence is ``[group, (letter, element, coordinate bins…) per site, END, lattice bins…, PAD…]``:
the space group; each site's Wyckoff letter, element and one bin per free coordinate; the end
token; one bin per free lattice parameter of the crystal system; padding up to ``num_positions``.
Every position draws from one shared vocabulary of ``num_categories`` tokens, laid out as
``PAD, END, groups, letters, elements, coordinate bins, length bins, angle bins``.
"""

import functools
from collections.abc import Sequence

import numpy as np
from jaxtyping import Int

from arjax.crystal.notation import (
    ELEMENTS,
    END,
    Crystal,
    Site,
    check_vocabulary,
    element_cap,
    full_lattice,
    parse_crystal,
)
from arjax.crystal.wyckoff import (
    LETTERS,
    lattice_parameter_names,
    multiplicities,
    num_free_coordinates,
    wyckoff_letters,
)

__all__ = ["CrystalTokenizer"]

PAD, END_TOKEN = 0, 1
_ANGLES = ("alpha", "beta", "gamma")
_LATTICE_INDEX = {"a": 0, "b": 1, "c": 2, "alpha": 3, "beta": 4, "gamma": 5}


class CrystalTokenizer:
    """Vocabulary, encoder and decoder of crystal token sequences, and their grammar.

    Args:
        space_groups: the groups in the vocabulary (default all 230).
        elements: the element symbols in the vocabulary (default H..Og).
        max_sites: most Wyckoff sites per crystal; fixes ``num_positions``.
        max_atoms: most atoms per conventional cell (``None``: no cap).
        max_elements: most distinct elements per crystal (``None``: no cap).
        coordinate_bins: ``B``; a free coordinate takes the values ``k / B``, ``k = 0..B-1``.
        length_range: ``(lowest, highest)`` lattice length in Å.
        length_bins: lattice lengths take the values ``linspace(*length_range, length_bins)``.
        angle_range: ``(lowest, highest)`` lattice angle in degrees.
        angle_bins: lattice angles take the values ``linspace(*angle_range, angle_bins)``.

    Example:
        >>> tok = CrystalTokenizer(space_groups=[221], elements=["Sr", "Ti", "O"], max_sites=5, max_atoms=5,
        ...                        coordinate_bins=8, length_range=(3.0, 5.0), length_bins=21)
        >>> x = tok.encode("221-a-Sr-b-Ti-c-O-X-3.9")
        >>> x.shape == (tok.num_positions,), tok.to_string(x)
        (True, '221-a-Sr-b-Ti-c-O-X-3.9')
    """

    def __init__(
        self,
        *,
        space_groups: Sequence[int] | None = None,
        elements: Sequence[str] | None = None,
        max_sites: int = 8,
        max_atoms: int | None = None,
        max_elements: int | None = None,
        coordinate_bins: int = 32,
        length_range: tuple[float, float] = (2.0, 12.0),
        length_bins: int = 101,
        angle_range: tuple[float, float] = (60.0, 150.0),
        angle_bins: int = 91,
    ):
        groups, elements = check_vocabulary(space_groups, elements)
        for name, value in (("max_sites", max_sites), ("coordinate_bins", coordinate_bins)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, (lo, hi), n in (("length", length_range, length_bins), ("angle", angle_range, angle_bins)):
            if not isinstance(n, int) or n < 1 or not 0 < lo <= hi or (n > 1 and lo == hi):
                raise ValueError(f"{name}_range/{name}_bins must give 0 < lo <= hi and n >= 1, got {(lo, hi)}, {n}")
        cap = max_sites * 192 if max_atoms is None else int(max_atoms)
        blocked = [g for g in groups if min(multiplicities(g)) > cap]
        if blocked:
            raise ValueError(f"max_atoms={max_atoms} is below the smallest multiplicity of space groups {blocked}")
        self.space_groups = groups
        self.elements = elements
        self.max_sites = max_sites
        self.max_atoms = max_atoms
        self.coordinate_bins = coordinate_bins
        self.length_range = (float(length_range[0]), float(length_range[1]))
        self.length_bins = length_bins
        self.angle_range = (float(angle_range[0]), float(angle_range[1]))
        self.angle_bins = angle_bins
        self.num_letters = max(len(wyckoff_letters(g)) for g in groups)
        self.atom_cap = cap
        self.max_elements = max_elements
        self.element_cap = element_cap(max_elements, elements)
        self.group_start = 2
        self.letter_start = self.group_start + len(groups)
        self.element_start = self.letter_start + self.num_letters
        self.coordinate_start = self.element_start + len(elements)
        self.length_start = self.coordinate_start + coordinate_bins
        self.angle_start = self.length_start + length_bins
        self.num_categories = self.angle_start + angle_bins
        max_free = max(max(num_free_coordinates(g)) for g in groups)
        max_lattice = max(len(lattice_parameter_names(g)) for g in groups)
        self.num_positions = 1 + max_sites * (2 + max_free) + 1 + max_lattice

    @classmethod
    def for_crystals(cls, crystals, *, margin: float = 0.0, **kwargs) -> "CrystalTokenizer":
        """A tokenizer whose groups, elements, site/atom caps and length range fit ``crystals``.

        ``crystals`` are ``Crystal`` objects or strings; other arguments are passed on. When no
        crystal's system has a free angle, a single angle bin is kept.

        >>> tok = CrystalTokenizer.for_crystals(["221-a-Sr-b-Ti-c-O-X-3.9", "225-a-Na-b-Cl-X-5.64"])
        >>> tok.space_groups, tok.elements, tok.max_sites, tok.max_atoms
        ((221, 225), ('O', 'Na', 'Cl', 'Ti', 'Sr'), 3, 8)
        """
        crystals = [c if isinstance(c, Crystal) else parse_crystal(c) for c in crystals]
        lengths = [v for c in crystals for v in c.lattice[:3]]
        options = {
            "space_groups": sorted({c.space_group for c in crystals}),
            "elements": sorted({s.element for c in crystals for s in c.sites}, key=ELEMENTS.index),
            "max_sites": max(len(c.sites) for c in crystals),
            "max_atoms": max(c.num_atoms for c in crystals),
            "length_range": (min(lengths) - margin, max(lengths) + margin),
        }
        if not any(set(lattice_parameter_names(c.space_group)) & set(_ANGLES) for c in crystals):
            options["angle_bins"] = 1
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
            self.coordinate_bins,
            self.length_range,
            self.length_bins,
            self.angle_range,
            self.angle_bins,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, CrystalTokenizer) and self.config == other.config

    def __hash__(self) -> int:
        return hash(self.config)

    def __repr__(self) -> str:
        return (
            f"CrystalTokenizer({len(self.space_groups)} groups, {len(self.elements)} elements, "
            f"max_sites={self.max_sites}, max_atoms={self.max_atoms}, "
            + (f"max_elements={self.max_elements}, " if self.max_elements is not None else "")
            + f"coordinate_bins={self.coordinate_bins}, "
            f"num_positions={self.num_positions}, num_categories={self.num_categories})"
        )

    @functools.cached_property
    def coordinate_values(self) -> np.ndarray:
        """The value of each coordinate bin, ``k / B``."""
        return np.arange(self.coordinate_bins) / self.coordinate_bins

    @functools.cached_property
    def length_values(self) -> np.ndarray:
        """The value (Å) of each lattice-length bin."""
        return np.linspace(*self.length_range, self.length_bins)

    @functools.cached_property
    def angle_values(self) -> np.ndarray:
        """The value (degrees) of each lattice-angle bin."""
        return np.linspace(*self.angle_range, self.angle_bins)

    @functools.cached_property
    def vocabulary(self) -> tuple[str, ...]:
        """Readable name of every token, e.g. ``'sg:225'``, ``'w:a'``, ``'el:La'``, ``'xyz:0.25'``."""
        return (
            ("<pad>", END)
            + tuple(f"sg:{g}" for g in self.space_groups)
            + tuple(f"w:{letter}" for letter in LETTERS[: self.num_letters])
            + tuple(f"el:{e}" for e in self.elements)
            + tuple(f"xyz:{v:.6g}" for v in self.coordinate_values)
            + tuple(f"len:{v:.6g}" for v in self.length_values)
            + tuple(f"ang:{v:.6g}" for v in self.angle_values)
        )

    @property
    def allowed(self):
        """The grammar as a prefix rule ``allowed(x, i) -> Bool[K]`` for ``arjax.Autoregressive``."""
        from arjax.crystal.grammar import CrystalGrammar

        return CrystalGrammar(self)

    def encode(self, crystal: Crystal | str) -> Int[np.ndarray, " N"]:
        """Tokens of a crystal (or its string); sites are sorted by letter, numbers go to the nearest bin.

        >>> tok = CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> [tok.vocabulary[k] for k in tok.encode("225-a-Na-b-Cl-X-5.64")[:7]]
        ['sg:225', 'w:a', 'el:Na', 'w:b', 'el:Cl', 'X', 'len:5.6']
        """
        if isinstance(crystal, str):
            crystal = parse_crystal(crystal)
        g = crystal.space_group
        if g not in self.space_groups:
            raise ValueError(f"token 0: space group {g} is not in the vocabulary (space_groups={self.space_groups})")
        letters = wyckoff_letters(g)
        sites = sorted(crystal.sites, key=lambda s: letters.index(s.letter))
        if len(sites) > self.max_sites:
            raise ValueError(f"the crystal has {len(sites)} sites, more than max_sites={self.max_sites}")
        distinct = {site.element for site in sites}
        if len(distinct) > self.element_cap:
            raise ValueError(f"the crystal has {len(distinct)} distinct elements, more than "
                             f"max_elements={self.element_cap}")  # fmt: skip
        tokens = [self.group_start + self.space_groups.index(g)]
        for site in sites:
            if site.element not in self.elements:
                raise ValueError(
                    f"token {len(tokens) + 1}: element {site.element!r} of site {g}{site.letter} is not in the "
                    f"vocabulary (elements={self.elements})"
                )
            tokens += [
                self.letter_start + letters.index(site.letter),
                self.element_start + self.elements.index(site.element),
            ]
            bins = np.round(np.asarray(site.coordinates, np.float64) * self.coordinate_bins).astype(int)
            tokens += [self.coordinate_start + int(k) % self.coordinate_bins for k in bins]
        tokens.append(END_TOKEN)
        for name in lattice_parameter_names(g):
            value = crystal.lattice[_LATTICE_INDEX[name]]
            angle = name in _ANGLES
            grid = self.angle_values if angle else self.length_values
            k = int(np.argmin(np.abs(grid - value)))
            step = (grid[-1] - grid[0]) / max(len(grid) - 1, 1)
            if abs(grid[k] - value) > max(step / 2, 1e-9) + 1e-9:
                kind, bounds = ("angle", self.angle_range) if angle else ("length", self.length_range)
                raise ValueError(
                    f"token {len(tokens)}: lattice {kind} {name} = {value} is outside {kind}_range {bounds}"
                )
            tokens.append((self.angle_start if angle else self.length_start) + k)
        tokens += [PAD] * (self.num_positions - len(tokens))
        x = np.asarray(tokens, np.int32)
        self.decode(x)
        return x

    def encode_batch(self, crystals) -> Int[np.ndarray, "M N"]:
        """Stack ``encode`` over an iterable of crystals or strings.

        >>> tok = CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> tok.encode_batch(["225-a-Na-b-Cl-X-5.64"] * 3).shape
        (3, 13)
        """
        return np.stack([self.encode(c) for c in crystals])

    def decode(self, tokens) -> Crystal:
        """The crystal of a token sequence; an invalid sequence raises naming the first bad position.

        >>> tok = CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> tok.decode(tok.encode("225-b-Cl-a-Na-X-5.64")).to_string()
        '225-a-Na-b-Cl-X-5.6'
        """
        x = np.asarray(tokens)
        if x.shape != (self.num_positions,) or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"tokens must be {self.num_positions} integers, got shape {x.shape} dtype {x.dtype}")
        names = self.vocabulary
        x = x.tolist()

        def expect(i: int, lo: int, hi: int, what: str) -> int:
            if not lo <= x[i] < hi:
                got = repr(names[x[i]]) if 0 <= x[i] < len(names) else "out of the vocabulary"
                raise ValueError(f"position {i}: token {x[i]} ({got}) is not allowed here; expected {what}")
            return x[i] - lo

        g = self.space_groups[expect(0, self.group_start, self.letter_start, "a space group")]
        letters, mult, free = wyckoff_letters(g), multiplicities(g), num_free_coordinates(g)
        i, last, atoms, sites = 1, -1, 0, []
        while x[i] != END_TOKEN:
            if len(sites) == self.max_sites:
                expect(i, END_TOKEN, END_TOKEN + 1, f"the end token after max_sites={self.max_sites} sites")
            lo = max(last, 0) + (1 if last >= 0 and free[last] == 0 else 0)
            w = expect(i, self.letter_start, self.letter_start + self.num_letters, f"a Wyckoff letter of {g} or X")
            if not lo <= w < len(letters) or atoms + mult[w] > self.atom_cap:
                reason = (
                    f"Wyckoff letter '{LETTERS[w]}' is not in space group {g} (letters {''.join(letters)})"
                    if w >= len(letters)
                    else f"letters must not decrease, and one without free coordinates appears at most once; "
                    f"'{LETTERS[w]}' follows '{LETTERS[last]}'"
                    if w < lo
                    else f"site {g}{LETTERS[w]} brings the cell to {atoms + mult[w]} atoms > max_atoms={self.atom_cap}"
                )
                raise ValueError(f"position {i}: token {x[i]} ({names[x[i]]!r}): {reason}")
            last, atoms = w, atoms + mult[w]
            element = self.elements[expect(i + 1, self.element_start, self.coordinate_start, "an element")]
            used = {site.element for site in sites}
            if element not in used and len(used) == self.element_cap:
                raise ValueError(f"position {i + 1}: {element} would be element {self.element_cap + 1}, "
                                 f"more than max_elements={self.element_cap}")  # fmt: skip
            coords = tuple(
                float(
                    self.coordinate_values[expect(i + 2 + k, self.coordinate_start, self.length_start, "a coordinate")]
                )
                for k in range(free[w])
            )
            sites.append(Site(LETTERS[w], element, coords))
            i += 2 + free[w]
        if not sites:
            raise ValueError("position 1: the end token needs at least one site before it")
        values = []
        for name in lattice_parameter_names(g):
            i += 1
            if name in _ANGLES:
                k = expect(i, self.angle_start, self.num_categories, f"a lattice angle bin ({name})")
                values.append(float(self.angle_values[k]))
            else:
                k = expect(i, self.length_start, self.angle_start, f"a lattice length bin ({name})")
                values.append(float(self.length_values[k]))
        for j in range(i + 1, self.num_positions):
            expect(j, PAD, PAD + 1, "padding after the lattice parameters")
        return Crystal(g, tuple(sites), full_lattice(g, values))

    def to_string(self, tokens) -> str:
        """The readable string of a token sequence (``decode(tokens).to_string()``)."""
        return self.decode(tokens).to_string()

    def grammar_tables(self) -> dict[str, np.ndarray]:
        """Per-group tables used by the grammar: ``mult``, ``valid``, ``free`` ``[G, W]``, ``lattice_kinds``.

        ``lattice_kinds[G, 6]`` is 0 for a length, 1 for an angle, -1 past the group's parameters.
        """
        num_groups, num_letters = len(self.space_groups), self.num_letters
        mult = np.zeros((num_groups, num_letters), np.int32)
        free = np.zeros((num_groups, num_letters), np.int32)
        valid = np.zeros((num_groups, num_letters), bool)
        kinds = np.full((num_groups, 6), -1, np.int32)
        for k, g in enumerate(self.space_groups):
            m = multiplicities(g)
            mult[k, : len(m)] = m
            free[k, : len(m)] = num_free_coordinates(g)
            valid[k, : len(m)] = True
            for j, name in enumerate(lattice_parameter_names(g)):
                kinds[k, j] = int(name in _ANGLES)
        return {"mult": mult, "free": free, "valid": valid, "lattice_kinds": kinds}
