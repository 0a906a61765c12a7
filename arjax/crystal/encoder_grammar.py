"""The grammar of the mixed crystal sequence (``CrystalEncoder``) as a prefix rule for ``allowed=``."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from arjax.crystal.encoder import END, PAD, CrystalEncoder

__all__ = ["EncoderGrammar", "group_index", "site_letters"]


class EncoderGrammar:
    """``allowed(x, i) -> Bool[K]``: the tokens that may stand at token position ``i`` after ``x[:i]``.

    The rule enforces: a space group whose smallest multiplicity fits the atom cap; per site a
    Wyckoff letter of that group, letters non-decreasing and strictly increasing after a letter
    without free coordinates (such an orbit holds one site); the running total of atoms
    ``Σ multiplicity ≤ max_atoms`` (a letter that would exceed it is masked); at most
    ``max_elements`` distinct elements (once that many are used, a site takes one of them); the end
    token after at least one site, then padding (letter and element both); sites on the same letter
    in element order. Rows of the continuous positions are not read (``arjax.Autoregressive`` applies
    ``allowed`` to token positions only); the rule gives them the padding token.

    Pure ``jax.numpy`` over static position tables, so it traces under ``jit``/``vmap``; any prefix,
    valid or not, gets a non-empty row.

    Example:
        >>> import jax.numpy as jnp
        >>> enc = CrystalEncoder(space_groups=[221], elements=["Sr", "Ti", "O"], max_sites=3, max_atoms=5)
        >>> rule = EncoderGrammar(enc)
        >>> x = jnp.asarray(enc.encode("221-a-Sr-b-Ti-c-O-X-3.9"), jnp.float32)
        >>> [enc.vocabulary[k] for k in jnp.flatnonzero(rule(x, 3))]      # after 221, a, Sr: 1 atom so far
        ['X', 'w:b', 'w:c', 'w:d']
        >>> [enc.vocabulary[k] for k in jnp.flatnonzero(rule(x, 5))]      # after a, b: c/d (3 atoms) fit, e (6) not
        ['X', 'w:c', 'w:d']
    """

    def __init__(self, encoder: CrystalEncoder):
        if not isinstance(encoder, CrystalEncoder):
            raise TypeError(f"encoder must be a CrystalEncoder, got {type(encoder).__name__}")
        self.encoder = encoder

    def __eq__(self, other) -> bool:
        return isinstance(other, EncoderGrammar) and self.encoder == other.encoder

    def __hash__(self) -> int:
        return hash(("EncoderGrammar", self.encoder))

    def __repr__(self) -> str:
        return f"EncoderGrammar({self.encoder!r})"

    def __call__(self, x: Float[Array, " N"], i: Int[Array, ""]) -> Bool[Array, " K"]:
        enc, t = self.encoder, self.encoder.tables
        mult, valid, free = jnp.asarray(t["mult"]), jnp.asarray(t["valid"]), jnp.asarray(t["free"])
        x, i = jnp.asarray(x), jnp.asarray(i)
        k = jnp.arange(enc.num_categories)
        g = group_index(enc, x)
        letters, is_letter = site_letters(enc, x)
        elements = jnp.clip(jnp.round(x[enc.element_positions]).astype(jnp.int32) - enc.element_start, 0,
                            len(enc.elements) - 1)  # fmt: skip
        s = jnp.clip((i - 1) // 2, 0, enc.max_sites - 1)
        before = jnp.arange(enc.max_sites) < s
        atoms = jnp.sum(jnp.where(before & is_letter, mult[g, letters], 0))
        ended = jnp.any(before & ~is_letter)
        previous = jnp.maximum(s - 1, 0)
        has_previous = (s > 0) & is_letter[previous]
        last = letters[previous]
        lowest = jnp.where(has_previous, last + (free[g, last] == 0), 0)
        w = jnp.clip(k - enc.letter_start, 0, enc.num_letters - 1)
        letter_ok = (
            (k >= enc.letter_start)
            & (k < enc.element_start)
            & valid[g, w]
            & (w >= lowest)
            & (atoms + mult[g, w] <= enc.atom_cap)
        )
        letter_row = jnp.where(ended, k == PAD, letter_ok | ((k == END) & (s > 0)))
        same_letter = has_previous & is_letter[s] & (letters[s] == last)
        lowest_element = jnp.where(same_letter, elements[previous], 0)
        used = jnp.any((before & is_letter)[:, None] & (elements[:, None] == jnp.arange(len(enc.elements))), axis=0)
        e = jnp.clip(k - enc.element_start, 0, len(enc.elements) - 1)
        element_ok = (k >= enc.element_start) & (e >= lowest_element) & (used[e] | (jnp.sum(used) < enc.element_cap))
        element_row = jnp.where(is_letter[s], element_ok, k == PAD)
        group_row = jnp.asarray(_group_row(enc))
        is_skeleton = (i >= 1) & (i < enc.coordinate_start)
        row = jnp.where(i == 0, group_row, jnp.where(is_skeleton & (i % 2 == 1), letter_row,
                                                     jnp.where(is_skeleton, element_row, k == PAD)))  # fmt: skip
        return row | (~jnp.any(row) & (k == PAD))


def group_index(encoder: CrystalEncoder, x: Float[Array, " N"]) -> Int[Array, ""]:
    """The vocabulary index of the space group at position 0 (clipped into range)."""
    return jnp.clip(jnp.round(x[0]).astype(jnp.int32) - encoder.group_start, 0, len(encoder.space_groups) - 1)


def site_letters(encoder: CrystalEncoder, x: Float[Array, " N"]) -> tuple[Int[Array, " S"], Bool[Array, " S"]]:
    """Each site's letter index (clipped into range) and whether its letter slot holds a letter at all."""
    tokens = jnp.round(x[encoder.letter_positions]).astype(jnp.int32)
    is_letter = (tokens >= encoder.letter_start) & (tokens < encoder.element_start)
    return jnp.clip(tokens - encoder.letter_start, 0, encoder.num_letters - 1), is_letter


def _group_row(encoder: CrystalEncoder) -> np.ndarray:
    k = np.arange(encoder.num_categories)
    mult, valid = encoder.tables["mult"], encoder.tables["valid"]
    smallest = np.where(valid, mult, np.iinfo(np.int32).max).min(axis=1)
    fits = np.zeros(encoder.num_categories, bool)
    fits[encoder.group_start : encoder.letter_start] = smallest <= encoder.atom_cap
    return fits & (k >= encoder.group_start)
