"""``QueensProposal``: a learned autoregressive proposal for counting n-queens solutions."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from arjax.allowed import masked_log_softmax
from arjax.counting.completions import count_completions
from arjax.sampling import check_sample_shape
from arjax.targets.energy import _checked_int
from arjax.targets.queens import MAX_BITMASK_N, BoardState, NonAttacking, bits_to_bool, free_counts_ahead, rows_exist

__all__ = ["QueensProposal", "MAX_EXACT_ROWS"]

MAX_EXACT_ROWS = 12
"""Most rows ``QueensProposal`` counts exactly (fewer than ``12! < 2**31`` completions, so int32 counts)."""


class QueensProposal(eqx.Module):
    r"""A proposal ``q(x) = Π_i q(x_i | x_{<i})`` over n-queens placements, one queen per row.

    Row ``i`` chooses among the columns that ``NonAttacking(n, look_ahead=horizon)`` allows
    (free, and leaving each of the next ``horizon`` rows a free column), with logits

    ``ℓ_i(c) = bias[i, c] + Σ_{t=1}^{h} table[i, t-1, f_t(c)]``,

    where ``f_t(c)`` is the number of free columns of row ``i + t`` once a queen stands at
    ``(i, c)`` (rows past the board add nothing) and ``h = horizon``. The zero-variance proposal
    for counting picks a column in proportion to the number of solutions below it; these
    look-ahead counts are a cheap, learnable stand-in for that. The initial table,
    ``½ ln f``, weighs a column by the square root of the product of the free counts it leaves.

    The last ``exact_rows`` rows use that zero-variance proposal itself: one depth-first search
    (``count_completions``) counts the ``C`` ways to finish the board below the learned rows and
    draws one of them uniformly (``q = 1/C`` for the tail, probability 0 if ``C = 0``). In the
    importance weight ``1/q(x)`` the tail then contributes exactly ``C``, with no sampling
    noise; most of the variance of Knuth's estimator comes from these last rows.

    It is an arjax net (``net(x) -> logits [n, n]``, row ``i`` reading only ``x[:i]``; tail rows
    carry ``ln C(child)``), so ``arjax.Autoregressive(net, allowed=net.allowed)`` is the same
    distribution; ``sample_and_log_prob`` and ``log_prob`` here are its fast path (``uint32``
    bitmasks, ``n ≤ 32``). A row with no allowed column is a dead end: ``log_prob = -inf``.

    ``QueensProposal.knuth(n)`` (no look-ahead, no exact rows, zero logits) is uniform over the
    free columns of each row: Knuth's (1975) estimator, the baseline.

    Args:
        n: board size, ``1 ≤ n ≤ 32``.
        horizon: rows ahead that enter the logits and the look-ahead of the rule,
            ``0 ≤ horizon ≤ n - 1`` (default ``n - 1``).
        exact_rows: rows counted exactly at the end, ``0 ≤ exact_rows ≤ min(n, 12)`` (default
            ``min(n, 5)``); the search grows about tenfold per two rows.
        lanes: boards searched at once by the exact rows' depth-first search (speed only, not
            the samples).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> q = QueensProposal(6)
        >>> x, log_q = q.sample_and_log_prob(jax.random.key(0), (1000,))
        >>> solved = jnp.isfinite(log_q)
        >>> bool(jnp.all(jnp.isclose(q.log_prob(x), log_q) | ~solved))
        True
        >>> round(float(jnp.sum(jnp.where(solved, jnp.exp(-log_q), 0.0)) / 1000))   # 6 queens: 4 solutions
        4
    """

    table: Float[Array, "n h f"]
    bias: Float[Array, "n n"]
    n: int = eqx.field(static=True)
    horizon: int = eqx.field(static=True)
    exact_rows: int = eqx.field(static=True)
    lanes: int = eqx.field(static=True)

    def __init__(self, n: int, *, horizon: int | None = None, exact_rows: int | None = None, lanes: int = 256):
        n = _checked_int("n", n, minimum=1)
        if n > MAX_BITMASK_N:
            raise ValueError(f"n must be an integer in 1..{MAX_BITMASK_N} (uint32 bitmask rows), got {n}")
        horizon = n - 1 if horizon is None else horizon
        if not isinstance(horizon, int) or isinstance(horizon, bool) or not 0 <= horizon <= n - 1:
            raise ValueError(f"horizon must be an integer in 0..{n - 1} (rows ahead of the current one), "
                             f"got {horizon!r}")
        exact_rows = min(n, 5) if exact_rows is None else exact_rows
        most = min(n, MAX_EXACT_ROWS)
        if not isinstance(exact_rows, int) or isinstance(exact_rows, bool) or not 0 <= exact_rows <= most:
            raise ValueError(f"exact_rows must be an integer in 0..{most}, got {exact_rows!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be an integer ≥ 1, got {lanes!r}")
        self.n, self.horizon, self.exact_rows, self.lanes = n, horizon, exact_rows, lanes
        log_free = 0.5 * np.log(np.maximum(np.arange(n + 1, dtype=np.float64), 1.0))
        self.table = jnp.asarray(np.broadcast_to(log_free, (n, horizon, n + 1)), jnp.result_type(float))
        self.bias = jnp.zeros((n, n), jnp.result_type(float))

    @classmethod
    def knuth(cls, n: int) -> "QueensProposal":
        """Uniform over the free columns of each row: Knuth's estimator, ``Π_i (free columns of row i)``.

        >>> import jax
        >>> x, log_q = QueensProposal.knuth(4).sample_and_log_prob(jax.random.key(0), (3,))
        >>> x.shape
        (3, 4)
        """
        return cls(n, horizon=0, exact_rows=0)

    def with_exact_rows(self, exact_rows: int, *, lanes: int | None = None) -> "QueensProposal":
        """The same learned table and bias with ``exact_rows`` rows counted exactly at the end.

        Training with a few exact rows is cheap; sampling with more removes the variance of those
        rows at the price of a longer search per sample.

        >>> q = QueensProposal(8, exact_rows=2).with_exact_rows(6)
        >>> q.exact_rows, q.table.shape
        (6, (8, 7, 9))
        """
        new = QueensProposal(self.n, horizon=self.horizon, exact_rows=exact_rows,
                             lanes=self.lanes if lanes is None else lanes)  # fmt: skip
        return eqx.tree_at(lambda m: (m.table, m.bias), new, (self.table, self.bias))

    @property
    def num_positions(self) -> int:
        return self.n

    @property
    def num_categories(self) -> int:
        return self.n

    @property
    def allowed(self) -> NonAttacking:
        """The rule this proposal samples under: ``NonAttacking(n, look_ahead=horizon)``."""
        return NonAttacking(self.n, look_ahead=self.horizon)

    def __call__(self, x: Int[Array, " N"], context: None = None) -> Float[Array, "N K"]:
        """Logits of every row of one placement ``x``: learned rows, then ``ln C(child)`` for the exact rows.

        A child with no completion (an attacked square has none) gets ``-inf``; a row none of
        whose children has one gets zeros.
        """
        if context is not None:
            raise ValueError("context was given, but QueensProposal takes none")
        x = jnp.asarray(x)
        if x.shape != (self.n,) or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"x must be one placement of shape ({self.n},) with integer columns, got {x.shape}")
        rule = self.allowed
        states = [rule.start()]
        for i in range(self.n - 1):
            states.append(rule.place(states[-1], x[i]))
        first_exact = self.n - self.exact_rows
        rows = []
        if first_exact:
            learned = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states[:first_exact])
            rows.append(jax.vmap(self._learned_logits)(learned, jnp.arange(first_exact)))
        for i in range(first_exact, self.n):
            children = jax.vmap(lambda c: rule.place(states[i], c))(jnp.arange(self.n))
            below = count_completions(children, self.n, self.n - 1 - i, lanes=self.n)[0]
            counts = jnp.where(NonAttacking(self.n).free(states[i], i), below, 0)  # an attacked square has none
            logits = jnp.where(counts > 0, jnp.log(counts.astype(self.table.dtype)), -jnp.inf)
            rows.append(jnp.where(jnp.any(counts > 0), logits, 0.0)[None])
        return jnp.concatenate(rows)

    def sample_and_log_prob(
        self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()
    ) -> tuple[Int[Array, "*S N"], Float[Array, " *S"]]:
        """Exact samples of shape ``sample_shape + (n,)`` and their ``ln q`` (``-inf`` for dead ends)."""
        shape = check_sample_shape(sample_shape)
        size = math.prod(shape)
        first_exact = self.n - self.exact_rows
        learned_key, tail_key = jax.random.split(key)
        uniforms = jax.vmap(lambda k: jax.random.uniform(k, (first_exact,)))(jax.random.split(learned_key, size))
        states, log_q, prefix = jax.vmap(self._learned_rows)(uniforms)
        counts, tail = count_completions(states, self.n, self.exact_rows, lanes=self.lanes, key=tail_key)
        log_q = jnp.where(counts > 0, log_q - jnp.log(counts.astype(log_q.dtype)), -jnp.inf)
        x = jnp.concatenate([prefix, tail], axis=1).astype(jnp.int32)
        return x.reshape(shape + (self.n,)), log_q.reshape(shape)

    def log_prob(self, x: Int[Array, "... N"]) -> Float[Array, "..."]:
        """Exact ``ln q(x)`` of placements ``[..., n]``: finite exactly on the solutions."""
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.n or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"x must hold placements of shape (..., {self.n}) with integer columns, got {x.shape}")
        flat = x.reshape(-1, self.n).astype(jnp.int32)
        states, log_p, completes = jax.vmap(self._learned_rows_of)(flat)
        counts = jnp.maximum(self._count(states), 1).astype(log_p.dtype)
        return jnp.where(completes, log_p - jnp.log(counts), -jnp.inf).reshape(x.shape[:-1])

    def _learned_logits(self, state: BoardState, i: Int[Array, ""]) -> Float[Array, " N"]:
        free = free_counts_ahead(state, self.n, self.horizon)  # [c, t-1]
        terms = jnp.take_along_axis(self.table[i][None], free[..., None], axis=-1)[..., 0]
        return self.bias[i] + jnp.sum(jnp.where(rows_exist(i, self.n, self.horizon), terms, 0.0), axis=-1)

    def _log_p(self, state: BoardState, i: Int[Array, ""]) -> Float[Array, " N"]:
        allowed = bits_to_bool(self.allowed.free_bits(state, i), self.n)
        return masked_log_softmax(self._learned_logits(state, i), allowed, dead_ends=True)

    def _count(self, states: BoardState) -> Int[Array, " B"]:
        """Completions of the exact rows below each state (leaves ``[B]``)."""
        return count_completions(states, self.n, self.exact_rows, lanes=self.lanes)[0]

    def _learned_rows(self, uniforms: Float[Array, " L"]) -> tuple[BoardState, Float[Array, ""], Int[Array, " L"]]:
        """Draw the learned rows of one placement: the state below them, their ``ln q`` and their columns."""

        def step(carry, inputs):
            state, log_q = carry
            i, uniform = inputs
            log_p = self._log_p(state, i)
            token = _inverse_cdf(uniform, log_p)
            return (self.allowed.place(state, token), log_q + log_p[token]), token

        init = (self.allowed.start(), jnp.zeros((), self.table.dtype))
        (state, log_q), prefix = lax.scan(step, init, (jnp.arange(uniforms.shape[0]), uniforms))
        return state, log_q, prefix

    def _learned_rows_of(self, x: Int[Array, " N"]) -> tuple[BoardState, Float[Array, ""], Bool[Array, ""]]:
        """``ln q`` of the learned rows of ``x``, the state below them, and whether ``x`` completes it."""
        first_exact = self.n - self.exact_rows

        def step(state, inputs):
            i, token = inputs
            return self.allowed.place(state, token), self._log_p(state, i)[token]

        state, log_p = lax.scan(step, self.allowed.start(), (jnp.arange(first_exact), x[:first_exact]))
        plain = NonAttacking(self.n)

        def tail(carry, token):
            below, ok = carry
            return (plain.place(below, token), ok & plain.free(below, 0)[token]), None

        (_, completes), _ = lax.scan(tail, (state, jnp.isfinite(jnp.sum(log_p))), x[first_exact:])
        return state, jnp.sum(log_p), completes


def _inverse_cdf(uniform: Float[Array, ""], log_p: Float[Array, " K"]) -> Int[Array, ""]:
    """The token whose cumulative-probability interval holds ``uniform``; token 0 at a dead end."""
    cumulative = jnp.cumsum(jnp.exp(log_p))
    token = jnp.sum(cumulative <= uniform * cumulative[-1]).astype(jnp.int32)
    return jnp.minimum(token, jnp.argmax(cumulative))
