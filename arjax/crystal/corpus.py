"""Crystal corpora: CSV files of CIFs read into Wyckoff strings (rows that fail are skipped and counted),
the shipped MP-20 binary/ternary subset, and a documented seeded split."""

import collections
import csv
import functools
import gzip
import io
import os
from collections.abc import Callable, Sequence
from importlib import resources
from typing import NamedTuple

import numpy as np

from arjax.crystal.cif import crystal_from_cif
from arjax.crystal.errors import CrystalError

__all__ = ["Corpus", "MP20_PROPERTIES", "load_cif_corpus", "load_mp20_biternary", "seeded_split"]

MP20_PROPERTIES = ("formation_energy_per_atom", "band_gap", "e_above_hull")


class Corpus(NamedTuple):
    """The rows of a corpus that could be read, and those skipped.

    Attributes:
        records: one dict per kept row: ``name``, ``crystal`` (the Wyckoff string) and the
            requested columns.
        skipped: ``(name, kind, reason)`` of every skipped row (``CrystalError``'s fields), in file order.
    """

    records: list[dict]
    skipped: list[tuple[str, str, str]]

    def skip_counts(self) -> dict[str, int]:
        """Skipped rows per kind of reason, most frequent first."""
        return dict(collections.Counter(kind for _, kind, _ in self.skipped).most_common())


def load_cif_corpus(
    path: str | os.PathLike,
    *,
    columns: Sequence[str] = (),
    name_column: str = "material_id",
    cif_column: str = "cif",
    symprec: float = 1e-3,
    check: Callable | None = None,
    limit: int | None = None,
) -> Corpus:
    """Read a CSV (``.csv`` or ``.csv.gz``) with a CIF column into Wyckoff strings, skipping bad rows.

    A row is skipped (and listed in ``Corpus.skipped`` with the reason's kind) when its CIF is
    unreadable, spglib cannot symmetrise it, or ``check(crystal, name)`` raises ``CrystalError``
    (e.g. ``encoder.encode`` for an element outside the vocabulary or a crystal over the atom
    cap). Other errors propagate.

    Example:
        >>> import tempfile, pathlib
        >>> cell = "".join(f"_cell_length_{k} 5.64\\n" for k in "abc")
        >>> cell += "".join(f"_cell_angle_{k} 90\\n" for k in ("alpha", "beta", "gamma"))
        >>> atoms = "loop_\\n" + "".join(f"_atom_site_{k}\\n" for k in ("type_symbol", "fract_x", "fract_y", "fract_z"))
        >>> atoms += "Na 0 0 0\\nNa 0 0.5 0.5\\nNa 0.5 0 0.5\\nNa 0.5 0.5 0\\n"
        >>> atoms += "Cl 0.5 0.5 0.5\\nCl 0.5 0 0\\nCl 0 0.5 0\\nCl 0 0 0.5\\n"
        >>> good = "data_x\\n" + cell + atoms
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "two.csv"
        >>> with open(path, "w", newline="") as f:
        ...     csv.writer(f).writerows([["material_id", "cif"], ["nacl", good], ["bad", "?"]])
        >>> corpus = load_cif_corpus(path)
        >>> [r["crystal"] for r in corpus.records], corpus.skip_counts()
        (['225-a-Na-b-Cl-X-5.64'], {'unreadable CIF': 1})
    """
    csv.field_size_limit(10**8)
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    records, skipped = [], []
    with opener(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (name_column, cif_column, *columns) if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path} has no column(s) {missing}; it has {reader.fieldnames}")
        for row in reader:
            if limit is not None and len(records) + len(skipped) >= limit:
                break
            name = row[name_column]
            try:
                crystal = crystal_from_cif(row[cif_column], name=name, symprec=symprec)
                if check is not None:
                    check(crystal, name)
            except CrystalError as error:
                skipped.append((name, error.kind, error.reason))
                continue
            records.append({"name": name, "crystal": crystal.to_string(digits=6), **{c: row[c] for c in columns}})
    return Corpus(records, skipped)


def load_mp20_biternary(split: str | None = None) -> list[dict]:
    """The MP-20 binary and ternary crystals shipped with the package, as Wyckoff strings.

    14,258 Materials Project crystals (MP-20's val and test splits restricted to 2–3 elements, as
    distributed by WyckoffTransformer; CC BY 4.0, see ``data/README.md``), symmetrised by
    ``scripts/derive_crystal_data.py`` (spglib, symprec 1e-3). Each record has ``material_id``,
    ``split`` (the *source* split, ``'val'`` or ``'test'``), ``formula``, ``crystal`` and the floats
    ``formation_energy_per_atom``, ``band_gap`` (eV) and ``e_above_hull`` (eV/atom). These are not
    MP-20's training split; use ``seeded_split`` for a train/validation/test split of your own.

    >>> records = load_mp20_biternary()
    >>> len(records), sorted(records[0])[:3]
    (14258, ['band_gap', 'crystal', 'e_above_hull'])
    """
    if split is not None and split not in ("val", "test"):
        raise ValueError(f"split must be 'val', 'test' or None, got {split!r}")
    return [dict(r) for r in _mp20_records() if split is None or r["split"] == split]


def seeded_split(
    records: Sequence, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> tuple[list, list, list]:
    """Split ``records`` into train/validation/test by a seeded permutation (NumPy ``default_rng(seed)``).

    The first ``round(f_train·M)`` of the permuted records train, the next ``round(f_val·M)``
    validate, the rest test; each part keeps the records' original order.

    >>> train, val, test = seeded_split(list(range(10)), (0.6, 0.2, 0.2), seed=0)
    >>> len(train), len(val), len(test), sorted(train + val + test) == list(range(10))
    (6, 2, 2, True)
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_train = round(fractions[0] * len(records))
    n_val = round(fractions[1] * len(records))
    parts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    return tuple([records[k] for k in np.sort(part)] for part in parts)


@functools.cache
def _mp20_records() -> tuple[dict, ...]:
    with resources.files("arjax.crystal").joinpath("data/mp_20_biternary.csv.gz").open("rb") as f:
        text = gzip.decompress(f.read()).decode()
    records = []
    for row in csv.DictReader(io.StringIO(text)):
        for name in MP20_PROPERTIES:
            row[name] = float(row[name])
        records.append(row)
    return tuple(records)
