"""Read CIF text into a ``Structure`` (no pymatgen needed) and find its Wyckoff description with spglib."""

import re
import shlex

import numpy as np

from arjax.crystal.errors import CrystalError
from arjax.crystal.notation import ELEMENTS, Crystal
from arjax.crystal.structure import Structure, from_structure, lattice_matrix
from arjax.crystal.wyckoff import parse_affine

__all__ = ["read_cif", "crystal_from_cif"]

_SYMBOL = re.compile(r"[A-Z][a-z]?")


def read_cif(text: str, *, name: str = "<cif>", tol: float = 1e-4) -> Structure:
    """The atoms of the first data block of a CIF: cell, symmetry operations applied, duplicates merged.

    Reads ``_cell_length_*``/``_cell_angle_*``, the ``_symmetry_equiv_pos_as_xyz`` (or
    ``_space_group_symop_operation_xyz``) loop and the ``_atom_site`` loop (``type_symbol`` or the
    label's leading symbol, ``fract_x/y/z``; occupancies must be 1). Raises ``CrystalError``
    naming ``name`` when the text is not such a CIF.

    >>> cif = '''data_NaCl
    ... _cell_length_a 5.64
    ... _cell_length_b 5.64
    ... _cell_length_c 5.64
    ... _cell_angle_alpha 90
    ... _cell_angle_beta 90
    ... _cell_angle_gamma 90
    ... loop_
    ... _atom_site_type_symbol
    ... _atom_site_fract_x
    ... _atom_site_fract_y
    ... _atom_site_fract_z
    ... Na 0 0 0
    ... Cl 0.5 0.5 0.5
    ... '''
    >>> s = read_cif(cif, name="NaCl")
    >>> s.species, s.frac_coords.tolist()
    (('Na', 'Cl'), [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    >>> read_cif("no cif here", name="broken")
    Traceback (most recent call last):
    ...
    arjax.crystal.errors.CrystalError: crystal broken: unreadable CIF: no _cell_length_a
    """
    if not isinstance(text, str):
        raise _unreadable(name, f"expected text, got {type(text).__name__}")
    fields, loops = _parse(text)

    def number(key: str) -> float:
        if key not in fields:
            raise _unreadable(name, f"no {key}")
        try:
            return float(re.sub(r"\(\d+\)$", "", fields[key]))
        except ValueError:
            raise _unreadable(name, f"{key} = {fields[key]!r} is not a number") from None

    cell = [number(f"_cell_length_{k}") for k in "abc"]
    cell += [number(f"_cell_angle_{k}") for k in ("alpha", "beta", "gamma")]
    try:
        lattice = lattice_matrix(*cell)
    except ValueError as error:
        raise _unreadable(name, f"{error}") from None
    atoms = next((loop for loop in loops if "_atom_site_fract_x" in loop), None)
    if atoms is None:
        raise _unreadable(name, "no _atom_site loop with fractional coordinates")
    ops_loop = next((loop for loop in loops if {"_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz"}
                     & set(loop)), None)  # fmt: skip
    ops = ["x, y, z"]
    if ops_loop is not None:
        ops = ops_loop.get("_symmetry_equiv_pos_as_xyz") or ops_loop["_space_group_symop_operation_xyz"]
    try:
        affine = [parse_affine(op) for op in ops]
    except ValueError as error:
        raise _unreadable(name, f"symmetry operation: {error}") from None
    symbols = atoms.get("_atom_site_type_symbol") or atoms.get("_atom_site_label")
    if symbols is None:
        raise _unreadable(name, "the _atom_site loop has neither type_symbol nor label")
    occupancy = atoms.get("_atom_site_occupancy", ["1"] * len(symbols))
    coords, species = [], []
    for row, (symbol, occ) in enumerate(zip(symbols, occupancy)):
        match = _SYMBOL.match(symbol)
        if match is None or match.group() not in ELEMENTS:
            raise _unreadable(name, f"atom {row} has unknown element {symbol!r}")
        try:
            point = np.array([float(re.sub(r"\(\d+\)$", "", atoms[f"_atom_site_fract_{k}"][row])) for k in "xyz"])
            fraction = float(re.sub(r"\(\d+\)$", "", occ))
        except ValueError:
            raise _unreadable(name, f"atom {row} ({symbol}) has a coordinate that is not a number")
        if abs(fraction - 1) > 1e-3:
            raise CrystalError(name, f"partial occupancy {fraction} of atom {row} ({symbol}) is not supported",
                               kind="partial occupancy")
        for r, t in affine:
            image = np.mod(r @ point + t, 1.0)
            image[np.isclose(image, 1.0, atol=tol)] = 0.0
            if not any(_same_point(image, c, tol) and s == match.group() for c, s in zip(coords, species)):
                coords.append(image)
                species.append(match.group())
    if not coords:
        raise _unreadable(name, "no atoms")
    return Structure(lattice, np.array(coords), tuple(species))


def crystal_from_cif(text: str, *, name: str = "<cif>", symprec: float = 1e-3) -> Crystal:
    """The Wyckoff description of a CIF's structure, found with spglib (``from_structure``).

    Raises ``CrystalError`` naming ``name``: an unreadable CIF, or a structure spglib cannot
    symmetrise (no symmetry dataset, or an orbit that matches no Wyckoff position).

    >>> cif = "data_x\\n_cell_length_a 3.9\\n_cell_length_b 3.9\\n_cell_length_c 3.9\\n"
    >>> cif += "_cell_angle_alpha 90\\n_cell_angle_beta 90\\n_cell_angle_gamma 90\\n"
    >>> cif += "loop_\\n_atom_site_type_symbol\\n_atom_site_fract_x\\n_atom_site_fract_y\\n_atom_site_fract_z\\n"
    >>> cif += "Sr 0 0 0\\nTi 0.5 0.5 0.5\\nO 0.5 0.5 0\\nO 0.5 0 0.5\\nO 0 0.5 0.5\\n"
    >>> crystal_from_cif(cif, name="SrTiO3").to_string()
    '221-a-Sr-b-Ti-c-O-X-3.9'
    """
    structure = read_cif(text, name=name)
    try:
        return from_structure(structure.lattice, structure.frac_coords, structure.species, symprec=symprec)
    except ValueError as error:
        raise CrystalError(name, f"spglib cannot symmetrise the structure: {error}", kind="cannot symmetrise") from None


def _unreadable(name: str, what: str) -> CrystalError:
    return CrystalError(name, f"unreadable CIF: {what}", kind="unreadable CIF")


def _same_point(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    return bool(np.all(np.abs((a - b + 0.5) % 1.0 - 0.5) < tol))


def _parse(text: str) -> tuple[dict[str, str], list[dict[str, list[str]]]]:
    """Tag-value pairs and loops (tag → column) of the first data block; ``;`` text fields are skipped."""
    fields: dict[str, str] = {}
    loops: list[dict[str, list[str]]] = []
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    k, blocks = 0, 0
    while k < len(lines):
        line = lines[k].strip()
        k += 1
        if not line:
            continue
        if line.lower().startswith("data_"):
            blocks += 1
            if blocks > 1:
                break
            continue
        if line.startswith(";"):
            while k < len(lines) and not lines[k].startswith(";"):
                k += 1
            k += 1
            continue
        if line.lower() == "loop_":
            tags = []
            while k < len(lines) and lines[k].strip().startswith("_"):
                tags.append(lines[k].strip().split()[0])
                k += 1
            values: list[str] = []
            while k < len(lines):
                row = lines[k].strip()
                if not row or row.startswith("_") or row.lower() == "loop_" or row.lower().startswith("data_"):
                    break
                values += _split(row)
                k += 1
            if tags:
                columns = {tag: values[j :: len(tags)] for j, tag in enumerate(tags)}
                if len(values) % len(tags) == 0:
                    loops.append(columns)
            continue
        if line.startswith("_"):
            parts = line.split(None, 1)
            if len(parts) == 2:
                fields[parts[0]] = _split(parts[1])[0] if _split(parts[1]) else ""
    return fields, loops


def _split(row: str) -> list[str]:
    try:
        return shlex.split(row, posix=True)
    except ValueError:
        return row.split()
