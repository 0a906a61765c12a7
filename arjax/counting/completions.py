"""Exact numbers of completions of partial n-queens placements, by a batched depth-first search."""

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Int, PRNGKeyArray

from arjax.targets.queens import BoardState

__all__ = ["count_completions"]


def count_completions(
    states: BoardState, n: int, rows: int, *, lanes: int = 64, key: PRNGKeyArray | None = None
) -> tuple[Int[Array, " B"], Int[Array, "B R"]]:
    """Count the ways ``C`` to finish each of ``B`` boards with their last ``rows`` queens, by depth-first search.

    ``states`` are the ``BoardState`` bitmasks before the first of those rows (leaves of shape
    ``[B]``). The search runs on ``lanes`` boards at a time, one node per lane and iteration, and
    a lane that finishes a board takes the next one, so the cost is the total number of search
    nodes divided by ``lanes`` rather than the largest search times ``B``.

    With ``key`` the same single pass also draws one completion of each board uniformly (reservoir
    sampling: the ``k``-th completion found replaces the kept one with probability ``1/k``, the
    uniform of board ``b`` and completion ``k`` being ``fold_in(fold_in(key, b), k)``) and returns
    its columns; a board with ``C = 0`` gets zeros. Without ``key`` the columns are all zeros.
    Neither result depends on ``lanes``, only the speed (64 is fastest on a 2-core CPU at
    n = 27). Counts are int32: ``rows ≤ 12`` keeps them below ``12! < 2**31``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax.targets import NonAttacking
        >>> rule = NonAttacking(6)
        >>> empty = jax.tree.map(lambda a: a[None], rule.start())
        >>> count_completions(empty, 6, 6)[0].tolist()   # all 4 solutions of the 6-queens problem
        [4]
        >>> draw = count_completions(empty, 6, 6, key=jax.random.key(0))[1][0].tolist()
        >>> draw in ([1, 3, 5, 0, 2, 4], [2, 5, 1, 4, 0, 3], [3, 0, 4, 1, 5, 2], [4, 2, 0, 5, 3, 1])
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
    board_keys = jax.random.split(key if draw else jax.random.key(0), size)
    lane = jnp.arange(lanes)

    def start(board):
        """Lanes reset to depth 0 on ``board`` (``size`` marks an idle lane)."""
        safe = jnp.minimum(board, size - 1)
        columns, down, up = (jnp.where(board < size, leaf[safe], 0) for leaf in states)
        free = jnp.where(board < size, ~(columns | down | up) & full, 0)
        stack = jnp.zeros((lanes, rows), jnp.uint32)
        return (stack.at[:, 0].set(columns), stack.at[:, 0].set(down), stack.at[:, 0].set(up),
                stack.at[:, 0].set(free))  # fmt: skip

    def step(carry):
        board, depth, (columns, down, up, free, path), count, kept, next_board, out_count, out_path = carry
        active = board < size
        here = free[lane, depth]
        has = active & (here != 0)
        bit = here & (~here + jnp.uint32(1))  # lowest free column of this node
        column = lax.population_count(bit - jnp.uint32(1)).astype(jnp.int32)
        free = free.at[lane, depth].set(jnp.where(has, here ^ bit, here))
        path = path.at[lane, depth].set(jnp.where(has, column, path[lane, depth]))
        leaf = has & (depth == rows - 1)
        count = count + leaf
        if draw:
            uniform = jax.vmap(lambda k, c: jax.random.uniform(jax.random.fold_in(k, c)))(
                board_keys[jnp.minimum(board, size - 1)], count)
            kept = jnp.where((leaf & (uniform * count < 1))[:, None], path, kept)
        push = has & ~leaf
        child = jnp.minimum(depth + 1, rows - 1)
        c, d, u = columns[lane, depth] | bit, ((down[lane, depth] | bit) << 1) & full, (up[lane, depth] | bit) >> 1
        columns = columns.at[lane, child].set(jnp.where(push, c, columns[lane, child]))
        down = down.at[lane, child].set(jnp.where(push, d, down[lane, child]))
        up = up.at[lane, child].set(jnp.where(push, u, up[lane, child]))
        free = free.at[lane, child].set(jnp.where(push, ~(c | d | u) & full, free[lane, child]))
        done = active & ~has & (depth == 0)
        depth = jnp.where(push, depth + 1, jnp.where(active & ~has, depth - 1, depth))
        slot = jnp.where(done, board, size)
        out_count = out_count.at[slot].set(count, mode="drop")
        if draw:
            out_path = out_path.at[slot].set(kept, mode="drop")
        taken = jnp.cumsum(done) - 1  # finished lanes take the next boards in order
        fresh = jnp.where(done, jnp.minimum(next_board + taken, size), board)
        restart = start(fresh)
        keep = lambda new, old: jnp.where(done[:, None], new, old)  # noqa: E731
        stacks = (keep(restart[0], columns), keep(restart[1], down), keep(restart[2], up), keep(restart[3], free),
                  path)  # fmt: skip
        return (fresh, jnp.where(done, 0, depth), stacks, jnp.where(done, 0, count), keep(0, kept),
                next_board + jnp.sum(done), out_count, out_path)  # fmt: skip

    first = jnp.minimum(lane, size)
    zeros = jnp.zeros((lanes, rows), jnp.int32)
    init = (first, jnp.zeros(lanes, jnp.int32), (*start(first), zeros), jnp.zeros(lanes, jnp.int32), zeros,
            jnp.asarray(lanes, jnp.int32), jnp.zeros(size, jnp.int32), jnp.zeros((size, rows), jnp.int32))  # fmt: skip
    carry = lax.while_loop(lambda carry: jnp.any(carry[0] < size), step, init)
    return carry[6], carry[7]
