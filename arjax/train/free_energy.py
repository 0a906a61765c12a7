"""``fit_free_energy``: reverse-KL training of an autoregressive net towards a Boltzmann target."""

import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray

from arjax.estimators import check_beta, check_sizes
from arjax.objectives import free_energy_loss
from arjax.parallel import batch_sharding, check_batch_divisible
from arjax.symmetry import check_symmetry, symmetrized_log_prob, symmetrized_sample
from arjax.train.guard import describe_non_finite
from arjax.train.loop import LoopStep, check_count, check_per_step, run_steps
from arjax.train.state import TrainState

__all__ = ["fit_free_energy", "annealed_beta"]


def annealed_beta(beta, anneal, step) -> jax.Array:
    r"""VAN's schedule ``β_t = β (1 - a^{t+1})`` (``anneal=a``); constant ``β`` when ``anneal`` is None.

    Counting from ``t + 1`` keeps the first step at ``β(1 - a) > 0``.

    >>> round(float(annealed_beta(1.0, 0.998, 0)), 6)
    0.002
    """
    step = jnp.asarray(step)
    if anneal is None:
        return jnp.full(step.shape, beta, jnp.result_type(float))
    return beta * (1 - anneal ** (step + 1.0))


def fit_free_energy(
    net: eqx.Module,
    target,
    beta: float | Callable[[jax.Array], Float[Array, ""]],
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    anneal: float | None = None,
    symmetry: str | None = None,
    clip_grad: float | None = None,
    max_consecutive_skips: int = 10,
    checkpoint: str | os.PathLike | None = None,
    resume: TrainState | None = None,
    return_state: bool = False,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable | None = None,
    mesh: Mesh | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]] | tuple[eqx.Module, dict[str, np.ndarray], TrainState]:
    r"""Minimise the variational free energy of ``target`` at ``beta`` over the parameters of ``net``.

    Each step draws ``batch_size`` exact samples, takes VAN's score-function gradient
    (``arjax.objectives.free_energy_loss``), clips it to global norm ``clip_grad`` when given and
    applies ``optimizer``. A step whose loss, gradient, updated parameters or optimiser state is
    not finite (say, an energy that is NaN for some samples) is skipped: the parameters stay, and
    ``history["finite"]`` is False there. ``max_consecutive_skips`` skipped steps in a row stop the
    run with ``arjax.train.NonFiniteError``, which says what was not finite.

    Steps are numbered from the start of the run, across resumed calls: step ``t`` draws from
    ``jax.random.fold_in(key, t)`` and anneals with that ``t``. A β ladder therefore runs as
    successive calls, each with its rung's ``beta``, ``num_steps`` the rung's last step and
    ``resume`` the previous call's state; it ends bit-identical to one call whose ``beta`` is the
    schedule ``β(t)`` of the same rungs (with ``anneal``, every rung continues the one annealing
    ``1 - a^{t+1}`` of the run rather than restarting it). β is evaluated outside the compiled
    steps, so calls that differ only in ``beta`` (a number or a schedule), ``anneal``, ``key``, the
    net's parameters or ``num_steps`` reuse one compilation; pass the same ``optimizer`` object
    (two ``optax.adam(1e-3)`` are two functions, compiled apart).

    Args:
        beta: the inverse temperature, or a schedule ``β(step)`` (e.g. an ``optax`` schedule).
        anneal: ``a`` of the factor ``1 - a^{t+1}`` applied to ``β`` (VAN uses 0.998), or None.
        symmetry: None or ``"z2"`` (``q_z2(x) = ½[q(x) + q(1-x)]``).
        max_consecutive_skips: the number of non-finite steps in a row that stops the run.
        checkpoint: a file path; written atomically every ``log_every`` steps and at the end,
            and resumed from when it exists (a finished run returns at once).
        resume: the ``TrainState`` of an earlier call (``return_state=True``) to continue from;
            it takes precedence over ``checkpoint``, which is still written.
        return_state: also return the ``TrainState`` to resume from.
        log_every: steps per compiled chunk, progress update and checkpoint.
        callback: ``callback(step, net, metrics) -> bool | None`` after every chunk; True stops.
        mesh: split the batch of samples over the devices of this ``jax.sharding.Mesh`` (see
            ``arjax.parallel``); the samples, and so the results, are those of one device.

    Returns:
        ``(net, history)``, or ``(net, history, state)`` with ``return_state``; ``history`` maps
        ``step``, ``beta``, ``free_energy``, ``free_energy_stderr``, ``importance``, ``ess``,
        ``energy``, ``entropy`` and ``finite`` to per-step arrays.

    Example:
        >>> import jax, optax
        >>> from arjax.nn import MADE
        >>> from arjax.targets import IsingSquare
        >>> net, adam = MADE(num_positions=9, num_categories=2, key=jax.random.key(0)), optax.adam(1e-2)
        >>> net, history, state = fit_free_energy(net, IsingSquare(3), 0.3, optimizer=adam, num_steps=20,
        ...                                       batch_size=64, key=jax.random.key(1), progress=False,
        ...                                       return_state=True)
        >>> net, history = fit_free_energy(net, IsingSquare(3), 0.4, optimizer=adam, num_steps=40, batch_size=64,
        ...                                key=jax.random.key(1), progress=False, resume=state)  # next rung
        >>> history["beta"][[0, -1]].tolist(), history["free_energy"].shape
        ([0.30000001192092896, 0.4000000059604645], (40,))
    """
    check_sizes(net, target)
    if not callable(beta):
        check_beta(beta)
    check_symmetry(net, symmetry)
    check_count("num_steps", num_steps, minimum=1)
    check_count("batch_size", batch_size, minimum=2)
    check_count("log_every", log_every, minimum=1)
    if anneal is not None and not 0 <= anneal < 1:
        raise ValueError(f"anneal must be in [0, 1), got {anneal!r}")
    sharding = batch_sharding(mesh)
    check_batch_divisible("batch_size", batch_size, sharding)
    step = _FreeEnergyStep(target, key, batch_size, symmetry, sharding)

    def per_step(steps):
        values = annealed_beta(jax.vmap(beta)(steps) if callable(beta) else beta, anneal, steps)
        check_per_step("beta", values, steps, num_steps, positive=True)
        return dict(beta=values)

    def describe(row):
        return f"F={row['free_energy']:.5g}±{row['free_energy_stderr']:.2g} ESS={row['ess']:.0f}"

    net, history, state = run_steps(
        net, optimizer, step, name="fit_free_energy", num_steps=num_steps, log_every=log_every, clip_grad=clip_grad,
        max_consecutive_skips=max_consecutive_skips, checkpoint=checkpoint, resume=resume, progress=progress,
        describe=describe, per_step=per_step, callback=callback, mesh=mesh)  # fmt: skip
    return (net, history, state) if return_state else (net, history)


class _FreeEnergyStep(LoopStep):
    target: Any
    key: PRNGKeyArray
    batch_size: int = eqx.field(static=True)
    symmetry: str | None = eqx.field(static=True)
    sharding: Any = eqx.field(static=True)

    def __call__(self, params, static, carry, t, inputs):
        beta_t = inputs["beta"]
        (loss, stats), grads = jax.value_and_grad(self.loss, has_aux=True)(params, static, t, beta_t)
        row = dict(beta=beta_t, free_energy=stats.variational, free_energy_stderr=stats.variational_stderr,
                   importance=stats.importance, ess=stats.ess, energy=stats.energy, entropy=stats.entropy)
        return loss, grads, row, carry

    def loss(self, params, static, t, beta_t):
        return free_energy_loss(eqx.combine(params, static), jax.random.fold_in(self.key, t), self.target, beta_t,
                                self.batch_size, symmetry=self.symmetry, has_aux=True, sharding=self.sharding)

    def explain(self, net, t):
        energy, log_q = _energies(self, net, jnp.int32(t))
        return describe_non_finite("energy", energy, "samples") or describe_non_finite("ln q", log_q, "samples")


@eqx.filter_jit
def _energies(step: _FreeEnergyStep, net, t):
    """The energies and ``ln q`` of the samples that step ``t`` drew (for the message of a stopped run)."""
    x = symmetrized_sample(net, jax.random.fold_in(step.key, t), step.batch_size, step.symmetry)
    return jax.vmap(step.target.energy)(x), symmetrized_log_prob(net, x, step.symmetry)
