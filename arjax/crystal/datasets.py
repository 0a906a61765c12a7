"""The Perov-5 crystals as Wyckoff strings, shipped with the package (MIT, see data/LICENSE-perov_5.txt)."""

import csv
import functools
import gzip
import io
from importlib import resources

__all__ = ["PEROV5_PROPERTIES", "load_perov5"]

PEROV5_PROPERTIES = ("heat_all", "heat_ref", "dir_gap", "ind_gap")
_SPLITS = ("val", "test")


def load_perov5(split: str | None = None) -> list[dict]:
    """Perov-5 crystals (Castelli et al. 2012, as distributed with CDVAE) as Wyckoff strings.

    Each record has ``material_id``, ``split`` (``'val'`` or ``'test'``), ``formula``, ``crystal``
    (the string, found with spglib at symprec 1e-3 by ``scripts/derive_crystal_data.py``) and the
    properties ``heat_all``, ``heat_ref`` (formation energies, eV) and ``dir_gap``, ``ind_gap``
    (band gaps, eV) as floats. ``split=None`` returns both splits.

    >>> records = load_perov5("test")
    >>> sorted(records[0])
    ['crystal', 'dir_gap', 'formula', 'heat_all', 'heat_ref', 'ind_gap', 'material_id', 'split']
    """
    if split is not None and split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS} or None, got {split!r}")
    return [dict(r) for r in _records() if split is None or r["split"] == split]


@functools.cache
def _records() -> tuple[dict, ...]:
    with resources.files("arjax.crystal").joinpath("data/perov_5.csv.gz").open("rb") as f:
        text = gzip.decompress(f.read()).decode()
    records = []
    for row in csv.DictReader(io.StringIO(text)):
        for name in PEROV5_PROPERTIES:
            row[name] = float(row[name])
        records.append(row)
    return tuple(records)
