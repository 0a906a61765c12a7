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
from arjax.train.loop import LoopStep, check_count, run_steps
from arjax.train.state import TrainState

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
    max_consecutive_skips: int = 10,
    checkpoint: str | os.PathLike | None = None,
    resume: TrainState | None = None,
    return_state: bool = False,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]] | tuple[eqx.Module, dict[str, np.ndarray], TrainState]:
    r"""Train a counting proposal ``q`` towards ``p = uniform over the solutions`` with ``count_loss``.

    Each step draws ``batch_size`` exact samples of ``q``, weighs the solutions among them by
    ``w = 1/q(x)`` (``w²`` for ``divergence="chi2"``) and raises their ``ln q``; the optimum is
    the zero-variance proposal ``q*(x_i | x_{<i}) ∝`` number of solutions below ``x_{≤i}``. Steps
    that are not finite are skipped (``history["finite"]``), ``max_consecutive_skips`` in a row stop the
    run with ``arjax.train.NonFiniteError``; with ``checkpoint`` the run is saved atomically every
    ``log_every`` steps and resumed from the file when it exists (or from ``resume``, a ``TrainState``
    returned with ``return_state=True``), as in ``fit_free_energy``.

    Args:
        net: a self-contained proposal (``arjax.counting.QueensProposal``) or an autoregressive
            net used as ``arjax.Autoregressive(net, allowed=allowed)``.
        is_solution: ``x: Int[N] -> bool`` for one sequence.
        divergence: ``"forward_kl"`` or ``"chi2"`` (see ``arjax.objectives.count_loss``).

    Returns:
        ``(net, history)`` (and the ``TrainState`` with ``return_state``); ``history`` maps
        ``step``, ``log_count``, ``ess_fraction``, ``completed``, ``divergence`` and ``finite`` to per-step arrays.

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
    step = _CountStep(key, is_solution, batch_size, divergence, allowed)

    def describe(row):
        return f"ln Q={row['log_count']:.5g} ESS/B={row['ess_fraction']:.3g} done={row['completed']:.3g}"

    net, history, state = run_steps(
        net, optimizer, step, name="fit_count", num_steps=num_steps, log_every=log_every, clip_grad=clip_grad,
        max_consecutive_skips=max_consecutive_skips, checkpoint=checkpoint, resume=resume, progress=progress,
        describe=describe, callback=callback)  # fmt: skip
    return (net, history, state) if return_state else (net, history)


class _CountStep(LoopStep):
    key: PRNGKeyArray
    is_solution: Callable = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    divergence: str = eqx.field(static=True)
    allowed: object

    def __call__(self, params, static, carry, t, inputs):
        (loss, stats), grads = jax.value_and_grad(self.loss, has_aux=True)(params, static, t)
        return loss, grads, stats._asdict(), carry

    def loss(self, params, static, t):
        return count_loss(eqx.combine(params, static), jax.random.fold_in(self.key, t), is_solution=self.is_solution,
                          num_samples=self.batch_size, allowed=self.allowed, divergence=self.divergence,
                          has_aux=True)  # fmt: skip
