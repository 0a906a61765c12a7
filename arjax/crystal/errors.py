"""``CrystalError``: a crystal that cannot be read, symmetrised or encoded, with its name and the reason."""

__all__ = ["CrystalError"]


class CrystalError(ValueError):
    """A ``ValueError`` that names the crystal (``name``) and says why it was refused (``reason``).

    ``kind`` is a short category of the reason (``'unreadable CIF'``, ``'too many atoms'``, …), by
    which corpus loaders count the rows they skip.

    >>> error = CrystalError("mp-149", "element 'Xx' is not in the vocabulary", kind="element outside the vocabulary")
    >>> str(error), error.kind
    ("crystal mp-149: element 'Xx' is not in the vocabulary", 'element outside the vocabulary')
    """

    def __init__(self, name, reason: str, *, kind: str | None = None):
        self.name = str(name)
        self.reason = str(reason)
        self.kind = self.reason if kind is None else str(kind)
        super().__init__(f"crystal {self.name}: {self.reason}")
