"""Derive the compact data files of ``arjax.crystal`` from the reference data in ``../shared/data``.

Writes into ``arjax/crystal/data/``:

* ``wyckoff.json.gz`` — the Wyckoff positions of the 230 space groups in letter order (from PyXtal's
  ``wyckoff_list.csv``) and, per group, the spglib Hall number of the same setting.
* ``perov_5.csv.gz`` — every Perov-5 crystal (val and test splits) as a readable Wyckoff string
  found with spglib, with its formation energies and band gaps.
* ``mp_20_biternary.csv.gz`` — every readable MP-20 binary/ternary crystal (val and test splits of
  the source) as a Wyckoff string, with formation energy, band gap and E_hull (``--mp20``).
* the licence notices of the sources.

Needs spglib (``pip install spglib``). Usage::

    python scripts/derive_crystal_data.py --source ../shared/data [--mp20] [--skip-perov]
"""

import argparse
import ast
import csv
import gzip
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "arjax" / "crystal" / "data"
PROPERTIES = ("heat_all", "heat_ref", "dir_gap", "ind_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data", help="reference data folder")
    parser.add_argument("--symprec", type=float, default=1e-3, help="spglib symmetry tolerance (Å)")
    parser.add_argument("--skip-perov", action="store_true", help="do not derive perov_5.csv.gz")
    parser.add_argument("--mp20", action="store_true", help="also derive mp_20_biternary.csv.gz")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    derive_wyckoff(args.source / "wyckoff")
    if not args.skip_perov:
        derive_perov5(args.source / "perov_5", args.symprec)
    if args.mp20:
        derive_mp20(args.source / "mp_20_biternary", args.symprec)


def derive_wyckoff(source: Path) -> None:
    import spglib

    sys.path.insert(0, str(ROOT))
    from arjax.crystal.wyckoff import parse_affine

    csv.field_size_limit(10**8)
    with open(source / "wyckoff_list.csv", newline="") as f:
        rows = [row for row in csv.reader(f) if row and row[0].strip().isdigit() and int(row[0]) >= 1]
    halls: dict[int, list[int]] = {}
    for h in range(1, 531):
        halls.setdefault(spglib.get_spacegroup_type(h).number, []).append(h)
    groups = []
    for row in rows:
        g = int(row[0])
        orbits = [[op.strip() for op in ops] for ops in reversed(ast.literal_eval(row[1]))]
        general = {_op_key(*parse_affine(op)) for op in orbits[-1]}
        hall = next(h for h in halls[g] if _database_ops(spglib, h) == general)
        groups.append({"number": g, "hall": hall, "orbits": orbits})
    assert [group["number"] for group in groups] == list(range(1, 231))
    payload = {
        "source": "PyXtal database/wyckoff_list.csv (MIT, see LICENSE-pyxtal.txt); letters a, b, ... in order",
        "groups": groups,
    }
    _write_gzip(OUT / "wyckoff.json.gz", json.dumps(payload, separators=(",", ":")).encode())
    shutil.copyfile(source / "LICENSE.txt", OUT / "LICENSE-pyxtal.txt")
    print(f"wyckoff.json.gz: {sum(len(g['orbits']) for g in groups)} letters in 230 groups")


def derive_perov5(source: Path, symprec: float) -> None:
    sys.path.insert(0, str(ROOT))
    from arjax.crystal.structure import from_structure, lattice_matrix

    csv.field_size_limit(10**8)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("material_id", "split", "formula", "crystal", *PROPERTIES))
    counts = {}
    start = time.perf_counter()
    for split in ("val", "test"):
        with open(source / f"{split}.csv", newline="") as f:
            records = list(csv.DictReader(f))
        for record in records:
            lengths, angles, species, frac = _read_p1_cif(record["cif"])
            crystal = from_structure(lattice_matrix(*lengths, *angles), frac, species, symprec=symprec)
            values = [f"{float(record[name]):.6g}" for name in PROPERTIES]
            writer.writerow((record["material_id"], split, record["formula"], crystal.to_string(), *values))
        counts[split] = len(records)
    _write_gzip(OUT / "perov_5.csv.gz", out.getvalue().encode())
    shutil.copyfile(source / "LICENSE", OUT / "LICENSE-perov_5.txt")
    print(f"perov_5.csv.gz: {counts} crystals in {time.perf_counter() - start:.1f} s")


def derive_mp20(source: Path, symprec: float) -> None:
    sys.path.insert(0, str(ROOT))
    from arjax.crystal.corpus import MP20_PROPERTIES, load_cif_corpus
    from arjax.crystal.notation import parse_crystal

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("material_id", "split", "formula", "crystal", *MP20_PROPERTIES))
    start = time.perf_counter()
    for split in ("val", "test"):
        corpus = load_cif_corpus(source / f"{split}.csv.gz", symprec=symprec,
                                 columns=("pretty_formula", "spacegroup.number", *MP20_PROPERTIES))
        other_group = 0
        for r in corpus.records:
            other_group += parse_crystal(r["crystal"]).space_group != int(r["spacegroup.number"])
            values = [f"{float(r[name]):.6g}" for name in MP20_PROPERTIES]
            writer.writerow((r["name"], split, r["pretty_formula"], r["crystal"], *values))
        print(f"mp_20_biternary {split}: {len(corpus.records)} kept, skipped {corpus.skip_counts()}, "
              f"{other_group} with another space group than the source's spacegroup.number, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        for name, kind, reason in corpus.skipped:
            print(f"  skipped {name}: {reason}")
    _write_gzip(OUT / "mp_20_biternary.csv.gz", out.getvalue().encode())
    shutil.copyfile(source / "README.md", OUT / "README-mp_20_biternary.md")


def _read_p1_cif(cif: str):
    fields = dict(re.findall(r"^(_cell_\w+)\s+(\S+)", cif, re.M))
    lengths = [float(fields[f"_cell_length_{k}"]) for k in "abc"]
    angles = [float(fields[f"_cell_angle_{k}"]) for k in ("alpha", "beta", "gamma")]
    if "'x, y, z'" not in cif or cif.count("_symmetry_equiv_pos_as_xyz") != 1:
        raise ValueError("expected a P1 CIF")
    species, frac = [], []
    for line in cif.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[2] == "1" and re.fullmatch(r"[A-Z][a-z]?", parts[0]):
            species.append(parts[0])
            frac.append([float(v) for v in parts[3:6]])
    return lengths, angles, species, np.array(frac)


def _op_key(rotation, translation):
    return tuple(np.asarray(rotation).ravel().tolist()), tuple((np.round(np.mod(translation, 1) * 24) % 24).tolist())


def _database_ops(spglib, hall: int) -> set:
    ops = spglib.get_symmetry_from_database(hall)
    return {_op_key(r, t) for r, t in zip(ops["rotations"], ops["translations"])}


def _write_gzip(path: Path, data: bytes) -> None:
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as z:
        z.write(data)


if __name__ == "__main__":
    main()
