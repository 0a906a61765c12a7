"""Exact numbers of completions of partial n-queens placements, by a batched depth-first search."""

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Int, PRNGKeyArray

from arjax.targets.queens import BoardState

__all__ = ["count_completions"]


def count_completions(
    states: BoardState, n: int, rows: int, *, lanes: int = 256, key: PRNGKeyArray | None = None
) -> tuple[Int[Array, " B"], Int[Array, "B R"]]:
    """Count the ways ``C`` to finish each of ``B`` boards with their last ``rows`` queens, by depth-first search.

    ``states`` are the ``BoardState`` bitmasks before the first of those rows (leaves of shape
    ``[B]``). The search runs on ``lanes`` boards at a time, one node per lane and iteration, and
    a lane that finishes a board takes the next one, so the cost is the total number of search
    nodes divided by ``lanes`` rather than the largest search times ``B``.

    With ``key`` the same single pass also draws one completion of each board uniformly (reservoir
    sampling: the ``k``-th completion found replaces the kept one with probability ``1/k``) and
    returns its columns; a board with ``C = 0`` gets zeros. Without ``key`` the columns are all
    zeros. The ``1/k`` coin of board ``b`` is ``h mod k == 0`` for a 32-bit hash ``h`` of a
    per-board seed (drawn from ``key``) and ``k``, so the draw is uniform up to a relative error of
    ``C·2⁻³²``, and ``1/q`` of a sample does not depend on which completion was drawn. Neither
    result depends on ``lanes``, only the speed (256 is fastest on a 2-core CPU at n = 27).
    Counts are int32: ``rows ≤ 12`` keeps them below ``12! < 2**31``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax.targets import NonAttacking
        >>> rule = NonAttacking(6)
        >>> empty = jax.tree.map(lambda a: a[None], rule.start())
        >>> counts, draw = count_completions(empty, 6, 6, key=jax.random.key(0))
        >>> counts.tolist()   # all 4 solutions of the 6-queens problem, and one of them drawn
        [4]
        >>> draw[0].tolist() in ([1, 3, 5, 0, 2, 4], [2, 5, 1, 4, 0, 3], [3, 0, 4, 1, 5, 2], [4, 2, 0, 5, 3, 1])
        True
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 32:
        raise ValueError(f"n must be an integer in 1..32 (uint32 bitmask rows), got {n!r}")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 <= rows <= min(n, 12):
        raise ValueError(f"rows must be an integer in 0..{min(n, 12)}, got {rows!r}")
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
        raise ValueError(f"lanes must be an integer ≥ 1, got {lanes!r}")
    size = states.columns.shape[0]
    if rows == 0:
        return jnp.ones(size, jnp.int32), jnp.zeros((size, 0), jnp.int32)
    lanes = max(1, min(lanes, size))
    full = jnp.uint32((1 << n) - 1)
    draw = key is not None
    seeds = jax.random.bits(key, (size,), jnp.uint32) if draw else jnp.zeros(size, jnp.uint32)
    lane = jnp.arange(lanes)
    free = ~(states.columns | states.down | states.up) & full
    roots = jnp.stack([states.columns, states.down, states.up, free], axis=-1)  # a node: columns, down, up, free

    def root(board):
        """The root node of each lane's ``board`` (``size`` marks an idle lane)."""
        return jnp.where((board < size)[:, None], roots[jnp.minimum(board, size - 1)], jnp.uint32(0))

    def step(carry):
        board, depth, stack, path, count, kept, next_board, out_count, out_path = carry
        active = board < size
        node = stack[lane, depth]
        here = node[:, 3]
        has = active & (here != 0)
        bit = here & (~here + jnp.uint32(1))  # lowest free column of this node
        column = lax.population_count(bit - jnp.uint32(1)).astype(jnp.int32)
        path = path.at[lane, depth].set(jnp.where(has, column, path[lane, depth]))
        leaf = has & (depth == rows - 1)
        count = count + leaf
        if draw:
            salt = _mix32(count.astype(jnp.uint32) * jnp.uint32(0x9E3779B9))
            coin = _mix32(seeds[jnp.minimum(board, size - 1)] ^ salt)
            kept = jnp.where((leaf & (coin % jnp.maximum(count, 1).astype(jnp.uint32) == 0))[:, None], path, kept)
        push = has & ~leaf
        c, d, u = node[:, 0] | bit, ((node[:, 1] | bit) << 1) & full, (node[:, 2] | bit) >> 1
        child = jnp.stack([c, d, u, ~(c | d | u) & full], axis=-1)
        done = active & ~has & (depth == 0)
        slot = jnp.where(done, board, size)
        out_count = out_count.at[slot].set(count, mode="drop")
        if draw:
            out_path = out_path.at[slot].set(kept, mode="drop")
        taken = jnp.cumsum(done) - 1  # finished lanes take the next boards in order
        fresh = jnp.where(done, jnp.minimum(next_board + taken, size), board)
        visited = node.at[:, 3].set(jnp.where(has, here ^ bit, here))
        stack = stack.at[lane, depth].set(jnp.where(done[:, None], root(fresh), visited))
        stack = stack.at[jnp.where(push, lane, lanes), jnp.minimum(depth + 1, rows - 1)].set(child, mode="drop")
        depth = jnp.where(push, depth + 1, jnp.where(active & ~has & ~done, depth - 1, depth))
        return (fresh, depth, stack, path, jnp.where(done, 0, count), jnp.where(done[:, None], 0, kept),
                next_board + jnp.sum(done), out_count, out_path)  # fmt: skip

    first = jnp.minimum(lane, size)
    zeros = jnp.zeros((lanes, rows), jnp.int32)
    stack = jnp.zeros((lanes, rows, 4), jnp.uint32).at[:, 0].set(root(first))
    init = (first, jnp.zeros(lanes, jnp.int32), stack, zeros, jnp.zeros(lanes, jnp.int32), zeros,
            jnp.asarray(lanes, jnp.int32), jnp.zeros(size, jnp.int32), jnp.zeros((size, rows), jnp.int32))  # fmt: skip
    carry = lax.while_loop(lambda carry: jnp.any(carry[0] < size), step, init)
    return carry[7], carry[8]


def _mix32(x: Int[Array, "..."]) -> Int[Array, "..."]:
    """A bijective 32-bit integer hash (Wellons' lowbias32)."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)
