"""Wyckoff-position tokenisation of crystals (CrystalFormer-style) with exact grammar masks.

``wyckoff`` holds the tables of the 230 space groups; ``notation`` the readable crystal strings;
``tokens`` the discrete tokenizer; ``grammar`` its validity rule for ``arjax.Autoregressive``;
``structure`` the way to atoms in a cell and back (spglib); ``export`` hands cells to pymatgen or ASE;
``datasets`` the shipped Perov-5 strings.
"""

from arjax.crystal.datasets import load_perov5
from arjax.crystal.export import to_ase, to_pymatgen
from arjax.crystal.grammar import CrystalGrammar
from arjax.crystal.notation import ELEMENTS, Crystal, Site, full_lattice, parse_crystal
from arjax.crystal.structure import Structure, from_structure, lattice_matrix, lattice_parameters, to_structure
from arjax.crystal.tokens import CrystalTokenizer
from arjax.crystal.wyckoff import (
    LETTERS,
    crystal_system,
    fixed_letters,
    free_coordinates,
    general_positions,
    hall_number,
    lattice_parameter_names,
    multiplicities,
    num_free_coordinates,
    orbit,
    representative,
    representatives,
    wyckoff_letters,
)

__all__ = [
    "ELEMENTS",
    "LETTERS",
    "Crystal",
    "CrystalGrammar",
    "CrystalTokenizer",
    "Site",
    "Structure",
    "crystal_system",
    "fixed_letters",
    "free_coordinates",
    "from_structure",
    "full_lattice",
    "general_positions",
    "hall_number",
    "lattice_matrix",
    "lattice_parameter_names",
    "lattice_parameters",
    "load_perov5",
    "multiplicities",
    "num_free_coordinates",
    "orbit",
    "parse_crystal",
    "representative",
    "representatives",
    "to_ase",
    "to_pymatgen",
    "to_structure",
    "wyckoff_letters",
]
