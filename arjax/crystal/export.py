"""Hand decoded crystals to pymatgen or ASE (optional dependencies, imported on use)."""

from arjax.crystal.notation import Crystal
from arjax.crystal.structure import Structure, to_structure

__all__ = ["to_ase", "to_pymatgen"]


def to_pymatgen(crystal: Crystal | Structure):
    """A ``pymatgen.core.Structure`` of the conventional cell (needs ``pymatgen``).

    Example (skipped when pymatgen is missing):
        >>> structure = to_pymatgen(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))  # doctest: +SKIP
        >>> structure.composition.reduced_formula  # doctest: +SKIP
        'NaCl'
    """
    from pymatgen.core import Lattice
    from pymatgen.core import Structure as PymatgenStructure

    s = _as_structure(crystal)
    return PymatgenStructure(Lattice(s.lattice), list(s.species), s.frac_coords)


def to_ase(crystal: Crystal | Structure):
    """An ``ase.Atoms`` of the conventional cell with periodic boundaries (needs ``ase``).

    Example (skipped when ASE is missing):
        >>> atoms = to_ase(Crystal.from_string("225-a-Na-b-Cl-X-5.64"))  # doctest: +SKIP
        >>> atoms.get_chemical_formula()  # doctest: +SKIP
        'Cl4Na4'
    """
    from ase import Atoms

    s = _as_structure(crystal)
    return Atoms(symbols=list(s.species), scaled_positions=s.frac_coords, cell=s.lattice, pbc=True)


def _as_structure(crystal) -> Structure:
    if isinstance(crystal, Crystal):
        return to_structure(crystal)
    if isinstance(crystal, Structure):
        return crystal
    raise TypeError(f"expected a Crystal or a Structure, got {type(crystal).__name__}")
