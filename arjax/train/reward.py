"""``fit_reward``: KL-regularised reward fine-tuning of an autoregressive net (VI of ``p(x) e^{r(x)/τ}``)."""

import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.distribution import Autoregressive
from arjax.objectives import as_prior, reward_loss
from arjax.train.loop import check_count, robust_optimizer, run_steps

__all__ = ["fit_reward"]


def fit_reward(
    net: eqx.Module,
    reward_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
    *,
    prior: Autoregressive | eqx.Module | None = None,
    kl_weight: float = 1.0,
    temperature: float = 1.0,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    baseline: str = "loo",
    kl_weight_schedule: Callable | None = None,
    temperature_schedule: Callable | None = None,
    clip_grad: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]]:
    r"""Maximise ``E_q[r] - τ KL(q ‖ prior)`` (or ``E_q[r] + T S_q`` without a prior) over the parameters of ``net``.

    Each step draws ``batch_size`` exact samples of ``q`` and takes the leave-one-out
    score-function gradient of ``arjax.objectives.reward_loss``. The optimum is the tilted
    distribution ``q* ∝ prior(x) e^{r(x)/τ}`` (``∝ e^{r(x)/T}`` without a prior); with
    ``r = ln p(y|x)`` and ``τ = 1`` that is the posterior ``p(x|y)``. To fine-tune a pretrained
    model, pass its net both as ``net`` (where ``q`` starts) and as ``prior`` (held fixed).

    The update goes through ``optax.clip_by_global_norm(clip_grad)`` when given and
    ``optax.apply_if_finite``, so a step whose rewards or gradients are not finite is skipped
    (``history["finite"]`` is False there) instead of poisoning the parameters.

    Args:
        reward_fn: ``r(x: Int[N]) -> Float[]`` for one sequence.
        prior: None, an ``arjax.Autoregressive`` or a net with ``net``'s N and K.
        kl_weight: ``τ`` (with a prior).
        temperature: ``T`` (without a prior).
        kl_weight_schedule: ``τ(step)``, e.g. an ``optax`` schedule; overrides ``kl_weight``.
        temperature_schedule: ``T(step)``; overrides ``temperature``.
        baseline: ``"loo"`` (leave-one-out, unbiased) or ``"mean"`` (batch mean).
        checkpoint: a file path; written atomically every ``log_every`` steps and at the end,
            and resumed from when it exists (a finished run returns at once).
        log_every: steps per compiled chunk, progress update and checkpoint.
        callback: ``callback(step, net, metrics) -> bool | None``, called after each chunk with the
            latest row of metrics; returning True stops the run (e.g. for live evaluation).

    Returns:
        ``(net, history)``; ``history`` maps ``step``, ``kl_weight`` (with a prior) or
        ``temperature`` (without), ``objective``, ``objective_stderr``, ``reward``, ``kl``,
        ``entropy`` and ``finite`` to per-step arrays (see ``arjax.objectives.RewardEstimate``).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=6, num_categories=2, key=jax.random.key(0))
        >>> net, history = fit_reward(net, lambda x: jnp.sum(x) * 1.0, temperature=0.5, optimizer=optax.adam(1e-2),
        ...                           num_steps=20, batch_size=64, key=jax.random.key(1), progress=False)
        >>> history["reward"].shape, bool(history["finite"].all())
        ((20,), True)
    """
    check_count("num_steps", num_steps, minimum=1)
    check_count("batch_size", batch_size, minimum=2)
    check_count("log_every", log_every, minimum=1)
    prior = as_prior(prior, net)
    if prior is None:
        name, value, schedule = "temperature", temperature, temperature_schedule
        _check_unused("kl_weight", kl_weight != 1.0, "without a prior; use temperature")
        _check_unused("kl_weight_schedule", kl_weight_schedule is not None, "without a prior")
    else:
        name, value, schedule = "kl_weight", kl_weight, kl_weight_schedule
        _check_unused("temperature", temperature != 1.0, "with a prior; use kl_weight")
        _check_unused("temperature_schedule", temperature_schedule is not None, "with a prior")
    if schedule is not None and not callable(schedule):
        raise TypeError(f"{name}_schedule must be a callable of the step (e.g. an optax schedule), got {schedule!r}")
    if not 0 <= float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    optimizer = robust_optimizer(optimizer, clip_grad)

    def loss(params, static, step_key, weight, prior):
        weights = {"kl_weight": weight} if prior is not None else {"temperature": weight}
        return reward_loss(eqx.combine(params, static), step_key, reward_fn=reward_fn, prior=prior,
                           num_samples=batch_size, baseline=baseline, has_aux=True, **weights)

    def step_fn(params, static, opt_state, carry, t, prior):
        weight = jnp.asarray(schedule(t) if schedule is not None else value, jnp.result_type(float))
        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(
            params, static, jax.random.fold_in(key, t), weight, prior)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        row = {name: weight, **stats._asdict()}
        return optax.apply_updates(params, updates), opt_state, carry, row

    def describe(row):
        return f"objective={row['objective']:.5g}±{row['objective_stderr']:.2g} reward={row['reward']:.4g}"

    return run_steps(net, optimizer, step_fn, num_steps=num_steps, log_every=log_every, checkpoint=checkpoint,
                     progress=progress, describe=describe, operands=(prior,), callback=callback)


def _check_unused(name: str, given: bool, when: str) -> None:
    if given:
        raise ValueError(f"{name} has no effect {when}")
