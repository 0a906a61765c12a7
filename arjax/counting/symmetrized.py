"""``D4Symmetrized``: a counting proposal averaged over the 8 symmetries of the square board."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.sampling import check_sample_shape
from arjax.targets.queens import NQueens

__all__ = ["D4Symmetrized"]


class D4Symmetrized(eqx.Module):
    r"""``q_G(x) = (1/8) Σ_{g ∈ D4} q(g·x)`` for an n-queens proposal ``q``.

    The solutions are invariant under the rotations and reflections of the board, so ``q_G`` is
    a valid proposal whenever ``q`` is, and its weights ``1/q_G`` average ``q`` over the 8
    images of a solution, whose paths through the rows differ (the transposes place the queens
    column by column): errors of ``q`` on the images partly cancel. Sampling draws ``x ~ q`` and
    a uniform ``g``, returning ``g·x``; the extra cost is ``q.log_prob`` on the 8 images of the
    samples that are solutions only (dead ends keep ``ln q_G = -inf``), in chunks of
    ``chunk_fraction`` of the batch.

    Args:
        proposal: an n-queens proposal with ``sample_and_log_prob`` and ``log_prob`` (e.g.
            ``arjax.counting.QueensProposal``) over ``n`` rows.
        chunk_fraction: the share of a batch whose images are scored per step of the loop over
            the solutions, in ``(0, 1]``.

    Example:
        >>> import jax
        >>> from arjax.counting import QueensProposal
        >>> q = D4Symmetrized(QueensProposal.knuth(6))
        >>> x, log_q = q.sample_and_log_prob(jax.random.key(0), (500,))
        >>> bool(jax.numpy.allclose(q.log_prob(x), log_q))
        True
    """

    proposal: eqx.Module
    chunk_fraction: float = eqx.field(static=True)

    def __init__(self, proposal: eqx.Module, *, chunk_fraction: float = 0.25):
        for method in ("sample_and_log_prob", "log_prob"):
            if not callable(getattr(proposal, method, None)):
                raise TypeError(f"proposal must have {method}() (e.g. arjax.counting.QueensProposal), "
                                f"got {type(proposal).__name__}")  # fmt: skip
        if getattr(proposal, "num_positions", None) != getattr(proposal, "num_categories", None):
            raise ValueError("proposal must place n queens on an n×n board (num_positions == num_categories)")
        if not 0 < chunk_fraction <= 1:
            raise ValueError(f"chunk_fraction must be in (0, 1], got {chunk_fraction!r}")
        self.proposal = proposal
        self.chunk_fraction = float(chunk_fraction)

    @property
    def num_positions(self) -> int:
        return self.proposal.num_positions

    @property
    def num_categories(self) -> int:
        return self.proposal.num_categories

    def sample_and_log_prob(
        self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()
    ) -> tuple[Int[Array, "*S N"], Float[Array, " *S"]]:
        """Exact samples of ``q_G`` and their ``ln q_G``; dead ends of ``q`` stay dead ends (``-inf``)."""
        shape = check_sample_shape(sample_shape)
        size, n = math.prod(shape), self.num_positions
        sample_key, group_key = jax.random.split(key)
        x, log_q = self.proposal.sample_and_log_prob(sample_key, (size,))
        solved = jnp.isfinite(log_q)
        board = NQueens(n)
        images = jax.vmap(board.symmetries)(jnp.where(solved[:, None], x, jnp.arange(n)))  # [size, 8, n]
        g = jax.random.randint(group_key, (size,), 0, 8)
        y = jnp.where(solved[:, None], jnp.take_along_axis(images, g[:, None, None], axis=1)[:, 0], x)
        log_q_g = self._log_mean_over_images(images, solved)
        return y.reshape(shape + (n,)), jnp.where(solved, log_q_g, -jnp.inf).reshape(shape)

    def log_prob(self, x: Int[Array, "... N"]) -> Float[Array, "..."]:
        """``ln q_G(x)``: finite exactly where ``q.log_prob(x)`` is (the solutions)."""
        x = jnp.asarray(x)
        n = self.num_positions
        flat = x.reshape(-1, n)
        solved = jnp.isfinite(self.proposal.log_prob(flat))
        images = jax.vmap(NQueens(n).symmetries)(jnp.where(solved[:, None], flat, jnp.arange(n)))
        log_q_g = jax.vmap(lambda im: jax.nn.logsumexp(self.proposal.log_prob(im)))(images) - jnp.log(8.0)
        return jnp.where(solved, log_q_g, -jnp.inf).reshape(x.shape[:-1])

    def _log_mean_over_images(self, images: Int[Array, "M 8 N"], solved) -> Float[Array, " M"]:
        """``ln mean_g q(g·x)`` for the solved rows, scored in chunks over the solved rows only."""
        size, n = images.shape[0], images.shape[-1]
        chunk = max(1, math.ceil(self.chunk_fraction * size))
        order = jnp.concatenate([jnp.argsort(~solved, stable=True), jnp.zeros(chunk, jnp.int32)])
        num_solved = jnp.sum(solved)
        out = jnp.full(size, -jnp.inf, jnp.float32)

        def body(state):
            start, out = state
            rows = lax.dynamic_slice_in_dim(order, start, chunk)
            log_q = self.proposal.log_prob(images[rows].reshape(chunk * 8, n)).reshape(chunk, 8)
            value = jax.nn.logsumexp(log_q, axis=-1) - jnp.log(8.0)
            keep = start + jnp.arange(chunk) < num_solved
            return start + chunk, out.at[jnp.where(keep, rows, size)].set(value.astype(out.dtype), mode="drop")

        return lax.while_loop(lambda state: state[0] < num_solved, body, (jnp.zeros((), jnp.int32), out))[1]
