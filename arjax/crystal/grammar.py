"""The grammar of crystal token sequences as a prefix rule for ``arjax.Autoregressive(allowed=...)``."""

import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from arjax.crystal.tokens import END_TOKEN, PAD, CrystalTokenizer

__all__ = ["CrystalGrammar"]

_GROUP, _LETTER, _ELEMENT, _COORD, _LATTICE, _DONE = range(6)


class CrystalGrammar:
    """``allowed(x, i) -> Bool[K]``: the tokens that may follow ``x[:i]`` in a valid crystal sequence.

    The rule enforces: the space group first; then per site a Wyckoff letter of that group, an
    element and one coordinate bin per free coordinate of the letter; letters non-decreasing, and
    strictly increasing after a letter without free coordinates (such a position holds one site);
    at most ``max_sites`` sites, ``max_atoms`` atoms per conventional cell and ``max_elements``
    distinct elements (once that many are used, a site takes one of them); the end token after at
    least one site; one length or angle bin per free lattice parameter of the crystal system; then
    padding only. Every sequence that follows the rule decodes with ``tokenizer.decode``.

    It is pure ``jax.numpy`` (a loop over at most ``max_sites`` sites of the prefix), so it traces
    under ``jit`` and ``vmap``. Any prefix, valid or not, gets a non-empty row (padding when
    nothing else fits), so ``log_prob`` of an invalid sequence is ``-inf`` rather than an error.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> tok = CrystalTokenizer(space_groups=[221], elements=["Sr", "Ti", "O"], max_sites=3, max_atoms=5)
        >>> rule = CrystalGrammar(tok)
        >>> x = jnp.asarray(tok.encode("221-a-Sr-b-Ti-c-O-X-3.9"))
        >>> [tok.vocabulary[k] for k in jnp.flatnonzero(rule(x, 3))]
        ['X', 'w:b', 'w:c', 'w:d']
    """

    def __init__(self, tokenizer: CrystalTokenizer):
        if not isinstance(tokenizer, CrystalTokenizer):
            raise TypeError(f"tokenizer must be a CrystalTokenizer, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self._tables = tokenizer.grammar_tables()

    def __eq__(self, other) -> bool:
        return isinstance(other, CrystalGrammar) and self.tokenizer == other.tokenizer

    def __hash__(self) -> int:
        return hash(("CrystalGrammar", self.tokenizer))

    def __repr__(self) -> str:
        return f"CrystalGrammar({self.tokenizer!r})"

    def __call__(self, x: Int[Array, " N"], i: Int[Array, ""]) -> Bool[Array, " K"]:
        return _row(self, _prefix_state(self, jnp.asarray(x), jnp.asarray(i)))


def _prefix_state(grammar: CrystalGrammar, x, i):
    """Parse ``x[:i]`` site by site (an unrolled loop over ``max_sites``) into the state before ``i``."""
    tok, t = grammar.tokenizer, grammar._tables
    mult, free, kinds = jnp.asarray(t["mult"]), jnp.asarray(t["free"]), jnp.asarray(t["lattice_kinds"])
    n = x.shape[0]
    known = jnp.arange(n) < i
    g = jnp.clip(x[0] - tok.group_start, 0, len(tok.space_groups) - 1)
    zero, false = jnp.zeros((), jnp.int32), jnp.zeros((), bool)
    pos, ended, end_pos = jnp.ones((), jnp.int32), false, zero
    last, strict, sites, atoms, site_start, site_len = zero, zero, zero, zero, zero, zero
    used = jnp.zeros(len(tok.elements), bool)
    element_index = jnp.arange(len(tok.elements))
    for _ in range(tok.max_sites):
        at = jnp.minimum(pos, n - 1)
        token = x[at]
        present = known[at] & (pos < n) & ~ended
        is_end = present & (token == END_TOKEN)
        is_site = present & (token != END_TOKEN)
        w = jnp.clip(token - tok.letter_start, 0, tok.num_letters - 1)
        f = free[g, w]
        ended, end_pos = ended | is_end, jnp.where(is_end, pos, end_pos)
        last = jnp.where(is_site, w, last)
        strict = jnp.where(is_site, (f == 0).astype(jnp.int32), strict)
        sites, atoms = sites + is_site, atoms + jnp.where(is_site, mult[g, w], 0)
        element_at = jnp.minimum(pos + 1, n - 1)
        used = used | (is_site & known[element_at] & (x[element_at] - tok.element_start == element_index))
        site_start, site_len = jnp.where(is_site, pos, site_start), jnp.where(is_site, 2 + f, site_len)
        pos = jnp.where(is_site, pos + 2 + f, pos)
    closing = ~ended & (pos < i)
    ended, end_pos = ended | closing, jnp.where(closing, pos, end_pos)
    lattice_index = jnp.clip(i - end_pos - 1, 0, 6)
    lattice_open = (lattice_index < 6) & (kinds[g, jnp.minimum(lattice_index, 5)] >= 0)
    offset = i - site_start
    in_site = (sites > 0) & (offset >= 1) & (offset < site_len)
    phase = jnp.select(
        [i == 0, ended & lattice_open, ended, in_site & (offset == 1), in_site],
        [_GROUP, _LATTICE, _DONE, _ELEMENT, _COORD],
        _LETTER,
    )
    return {
        "phase": phase,
        "group": g,
        "last": last,
        "strict": strict,
        "sites": sites,
        "atoms": atoms,
        "used": used,
        "left": lattice_index,
    }


def _row(grammar: CrystalGrammar, state) -> Bool[Array, " K"]:
    tok, t = grammar.tokenizer, grammar._tables
    mult, valid, kinds = jnp.asarray(t["mult"]), jnp.asarray(t["valid"]), jnp.asarray(t["lattice_kinds"])
    k = jnp.arange(tok.num_categories)
    g, phase = state["group"], state["phase"]

    def between(lo, hi):
        return (k >= lo) & (k < hi)

    w = jnp.clip(k - tok.letter_start, 0, tok.num_letters - 1)
    letters = (
        between(tok.letter_start, tok.element_start)
        & valid[g, w]
        & (w >= state["last"] + state["strict"])
        & (state["atoms"] + mult[g, w] <= tok.atom_cap)
        & (state["sites"] < tok.max_sites)
    )
    end = (k == END_TOKEN) & (state["sites"] >= 1)
    e = jnp.clip(k - tok.element_start, 0, len(tok.elements) - 1)
    elements = between(tok.element_start, tok.coordinate_start) & (
        state["used"][e] | (jnp.sum(state["used"]) < tok.element_cap)
    )
    kind = kinds[g, jnp.clip(state["left"], 0, 5)]
    lattice = jnp.where(
        kind == 1, between(tok.angle_start, tok.num_categories), between(tok.length_start, tok.angle_start)
    )
    row = jnp.select(
        [phase == _GROUP, phase == _LETTER, phase == _ELEMENT, phase == _COORD, phase == _LATTICE],
        [
            between(tok.group_start, tok.letter_start),
            letters | end,
            elements,
            between(tok.coordinate_start, tok.length_start),
            lattice,
        ],
        k == PAD,
    )
    return row | (~jnp.any(row) & (k == PAD))
