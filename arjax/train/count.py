"""``fit_count``: fit an importance-sampling proposal to the uniform distribution over a problem's solutions."""

import os
from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np
import optax
from jaxtyping import Array, Bool, Int, PRNGKeyArray

from arjax.estimators import check_proposal
from arjax.objectives import DIVERGENCES, as_proposal, count_loss
from arjax.train.loop import check_count, robust_optimizer, run_steps

__all__ = ["fit_count"]


def fit_count(
    net: eqx.Module,
    is_solution: Callable[[Int[Array, " N"]], Bool[Array, ""]],
    *,
    allowed=None,
    divergence: str = "forward_kl",
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    clip_grad: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]]:
    r"""Train a counting proposal ``q`` towards ``p = uniform over the solutions`` with ``count_loss``.

    Each step draws ``batch_size`` exact samples of ``q``, weighs the solutions among them by
    ``w = 1/q(x)`` (``w²`` for ``divergence="chi2"``) and raises their ``ln q``; the optimum is
    the zero-variance proposal ``q*(x_i | x_{<i}) ∝`` number of solutions below ``x_{≤i}``. Steps
    whose gradient is not finite are skipped (``history["finite"]``); with ``checkpoint`` the run
    is saved atomically every ``log_every`` steps and resumed from the file when it exists.

    Args:
        net: a self-contained proposal (``arjax.counting.QueensProposal``) or an autoregressive
            net used as ``arjax.Autoregressive(net, allowed=allowed)``.
        is_solution: ``x: Int[N] -> bool`` for one sequence.
        divergence: ``"forward_kl"`` or ``"chi2"`` (see ``arjax.objectives.count_loss``).

    Returns:
        ``(net, history)``; ``history`` maps ``step``, ``log_count``, ``ess_fraction``,
        ``completed``, ``divergence`` and ``finite`` to per-step arrays.

    Example:
        >>> import jax, optax
        >>> from arjax.counting import QueensProposal
        >>> from arjax.targets import NQueens
        >>> q, history = fit_count(QueensProposal(6, exact_rows=0), NQueens(6).is_valid, optimizer=optax.adam(0.05),
        ...                        num_steps=20, batch_size=256, key=jax.random.key(0), progress=False)
        >>> history["ess_fraction"].shape, bool(history["finite"].all())
        ((20,), True)
    """
    check_count("num_steps", num_steps, minimum=1)
    check_count("batch_size", batch_size, minimum=2)
    check_count("log_every", log_every, minimum=1)
    if divergence not in DIVERGENCES:
        raise ValueError(f'divergence must be "forward_kl" or "chi2", got {divergence!r}')
    check_proposal(as_proposal(net, allowed), is_solution, "net")  # before any work
    optimizer = robust_optimizer(optimizer, clip_grad)

    def loss(params, static, step_key):
        return count_loss(eqx.combine(params, static), step_key, is_solution=is_solution, num_samples=batch_size,
                          allowed=allowed, divergence=divergence, has_aux=True)  # fmt: skip

    def step_fn(params, static, opt_state, carry, t):
        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, static, jax.random.fold_in(key, t))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carry, stats._asdict()

    def describe(row):
        return f"ln Q={row['log_count']:.5g} ESS/B={row['ess_fraction']:.3g} done={row['completed']:.3g}"

    return run_steps(net, optimizer, step_fn, num_steps=num_steps, log_every=log_every, checkpoint=checkpoint,
                     progress=progress, describe=describe, callback=callback)  # fmt: skip
