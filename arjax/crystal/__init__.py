"""Wyckoff-position descriptions of crystals (CrystalFormer-style) with exact grammar masks.

``wyckoff`` holds the tables of the 230 space groups; ``notation`` the readable crystal strings;
``tokens`` the binned tokenizer and ``grammar`` its validity rule; ``encoder`` the mixed
token/continuous encoding, ``encoder_grammar`` its rule, ``families`` the gated and bounded
families it uses and ``net`` its Transformer; ``structure`` the way to atoms in a cell and back
(spglib); ``cif`` reads CIF text; ``corpus`` loads corpora and splits them; ``export`` hands cells
to pymatgen or ASE; ``datasets`` the shipped Perov-5 strings.
"""

from arjax.crystal.cif import crystal_from_cif, read_cif
from arjax.crystal.corpus import Corpus, load_cif_corpus, load_mp20_biternary, seeded_split
from arjax.crystal.datasets import load_perov5
from arjax.crystal.encoder import CrystalEncoder
from arjax.crystal.encoder_grammar import EncoderGrammar
from arjax.crystal.errors import CrystalError
from arjax.crystal.export import to_ase, to_pymatgen
from arjax.crystal.families import Gated, IntervalLogitNormalMixture, LogitNormalMixture, TruncatedLogNormalMixture
from arjax.crystal.grammar import CrystalGrammar
from arjax.crystal.net import CrystalTransformer
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
    "Corpus",
    "Crystal",
    "CrystalEncoder",
    "CrystalError",
    "CrystalGrammar",
    "CrystalTokenizer",
    "CrystalTransformer",
    "EncoderGrammar",
    "Gated",
    "IntervalLogitNormalMixture",
    "LogitNormalMixture",
    "Site",
    "Structure",
    "TruncatedLogNormalMixture",
    "crystal_from_cif",
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
    "load_cif_corpus",
    "load_mp20_biternary",
    "load_perov5",
    "multiplicities",
    "num_free_coordinates",
    "orbit",
    "parse_crystal",
    "read_cif",
    "representative",
    "representatives",
    "seeded_split",
    "to_ase",
    "to_pymatgen",
    "to_structure",
    "wyckoff_letters",
]
