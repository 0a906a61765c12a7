"""``fit_free_energy``: reverse-KL training of an autoregressive net towards a Boltzmann target."""

import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import PRNGKeyArray

from arjax.estimators import check_beta, check_sizes
from arjax.objectives import free_energy_loss
from arjax.parallel import batch_sharding, check_batch_divisible
from arjax.symmetry import check_symmetry
from arjax.train.loop import check_count, robust_optimizer, run_steps

__all__ = ["fit_free_energy", "annealed_beta"]


def annealed_beta(beta: float, anneal: float | None, step) -> jax.Array:
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
    beta: float,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    anneal: float | None = None,
    symmetry: str | None = None,
    clip_grad: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable | None = None,
    mesh: Mesh | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]]:
    r"""Minimise the variational free energy of ``target`` at ``beta`` over the parameters of ``net``.

    Each step draws ``batch_size`` exact samples, takes VAN's score-function gradient
    (``arjax.objectives.free_energy_loss``) and applies ``optimizer`` — wrapped in
    ``optax.clip_by_global_norm(clip_grad)`` when given and in ``optax.apply_if_finite`` so a
    non-finite gradient skips the update instead of poisoning the parameters.

    Args:
        anneal: ``a`` of the schedule ``β_t = β(1 - a^{t+1})`` (VAN uses 0.998), or None.
        symmetry: None or ``"z2"`` (``q_z2(x) = ½[q(x) + q(1-x)]``).
        checkpoint: a file path; written atomically every ``log_every`` steps and at the end,
            and resumed from when it exists (a finished run returns at once).
        log_every: steps per compiled chunk, progress update and checkpoint.
        callback: ``callback(step, net, metrics) -> bool | None`` after every chunk; True stops.
        mesh: split the batch of samples over the devices of this ``jax.sharding.Mesh`` (see
            ``arjax.parallel``); the samples, and so the results, are those of one device.

    Returns:
        ``(net, history)``; ``history`` maps ``step``, ``beta``, ``free_energy``,
        ``free_energy_stderr``, ``importance``, ``ess``, ``energy``, ``entropy`` to per-step arrays.

    Example:
        >>> import jax, optax
        >>> from arjax.nn import MADE
        >>> from arjax.targets import IsingSquare
        >>> net = MADE(num_positions=9, num_categories=2, key=jax.random.key(0))
        >>> net, history = fit_free_energy(net, IsingSquare(3), 0.3, optimizer=optax.adam(1e-2),
        ...                                num_steps=20, batch_size=64, key=jax.random.key(1), progress=False)
        >>> history["free_energy"].shape
        (20,)
    """
    check_sizes(net, target)
    check_beta(beta)
    check_symmetry(net, symmetry)
    check_count("num_steps", num_steps, minimum=1)
    check_count("batch_size", batch_size, minimum=2)
    check_count("log_every", log_every, minimum=1)
    if anneal is not None and not 0 <= anneal < 1:
        raise ValueError(f"anneal must be in [0, 1), got {anneal!r}")
    optimizer = robust_optimizer(optimizer, clip_grad)
    sharding = batch_sharding(mesh)
    check_batch_divisible("batch_size", batch_size, sharding)

    def loss(params, static, step_key, beta_t):
        model = eqx.combine(params, static)
        return free_energy_loss(model, step_key, target, beta_t, batch_size, symmetry=symmetry, has_aux=True,
                                sharding=sharding)

    def metrics(stats, beta_t):
        return dict(beta=beta_t, free_energy=stats.variational, free_energy_stderr=stats.variational_stderr,
                    importance=stats.importance, ess=stats.ess, energy=stats.energy, entropy=stats.entropy)

    def step_fn(params, static, opt_state, carry, t):
        beta_t = annealed_beta(beta, anneal, t)
        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, static, jax.random.fold_in(key, t), beta_t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carry, metrics(stats, beta_t)

    def describe(row):
        return f"F={row['free_energy']:.5g}±{row['free_energy_stderr']:.2g} ESS={row['ess']:.0f}"

    return run_steps(net, optimizer, step_fn, num_steps=num_steps, log_every=log_every, checkpoint=checkpoint,
                     progress=progress, describe=describe, callback=callback, mesh=mesh)
