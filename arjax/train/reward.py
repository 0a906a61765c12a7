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
from arjax.objectives import as_prior, check_reward_gradient, reward_loss
from arjax.train.guard import describe_non_finite
from arjax.train.loop import LoopStep, check_count, check_per_step, run_steps
from arjax.train.state import TrainState

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
    gradient: str = "score",
    kl_weight_schedule: Callable | None = None,
    temperature_schedule: Callable | None = None,
    clip_grad: float | None = None,
    max_consecutive_skips: int = 10,
    checkpoint: str | os.PathLike | None = None,
    resume: TrainState | None = None,
    return_state: bool = False,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]] | tuple[eqx.Module, dict[str, np.ndarray], TrainState]:
    r"""Maximise ``E_q[r] - τ KL(q ‖ prior)`` (or ``E_q[r] + T S_q`` without a prior) over the parameters of ``net``.

    Each step draws ``batch_size`` exact samples of ``q`` and takes the leave-one-out
    score-function gradient of ``arjax.objectives.reward_loss`` (or its pathwise gradient through
    the continuous values, ``gradient="pathwise"``). The optimum is the tilted
    distribution ``q* ∝ prior(x) e^{r(x)/τ}`` (``∝ e^{r(x)/T}`` without a prior); with
    ``r = ln p(y|x)`` and ``τ = 1`` that is the posterior ``p(x|y)``. To fine-tune a pretrained
    model, pass its net both as ``net`` (where ``q`` starts) and as ``prior`` (held fixed).

    The gradient is clipped to global norm ``clip_grad`` when given. A step whose loss (say, a
    NaN reward), gradient, updated parameters or optimiser state is not finite is skipped
    (``history["finite"]`` is False there) instead of poisoning the parameters;
    ``max_consecutive_skips`` in a row stop the run with ``arjax.train.NonFiniteError``. Steps are
    numbered from the start of the run across resumed calls (``resume``), so schedules and keys
    continue where the previous call stopped.

    Args:
        reward_fn: ``r(x: Int[N]) -> Float[]`` for one sequence (a float sequence for nets with real-valued
            positions, e.g. ``arjax.crystal.design.validity_reward``).
        prior: None, an ``arjax.Autoregressive`` or a net with ``net``'s N and K.
        kl_weight: ``τ`` (with a prior).
        temperature: ``T`` (without a prior).
        kl_weight_schedule: ``τ(step)``, e.g. an ``optax`` schedule; overrides ``kl_weight``.
        temperature_schedule: ``T(step)``; overrides ``temperature``.
        baseline: ``"loo"`` (leave-one-out, unbiased) or ``"mean"`` (batch mean).
        gradient: ``"score"`` or ``"pathwise"`` (through the continuous values of nets that have them, for a
            reward differentiable in them, e.g. ``-w · arjax.crystal.geometry.overlap_penalty``; see
            ``arjax.objectives.reward_loss``).
        max_consecutive_skips: the number of non-finite steps in a row that stops the run.
        checkpoint: a file path; written atomically every ``log_every`` steps and at the end,
            and resumed from when it exists (a finished run returns at once).
        resume: the ``TrainState`` of an earlier call (``return_state=True``) to continue from,
            with ``num_steps`` the new end of the run; it takes precedence over ``checkpoint``.
        return_state: also return the ``TrainState`` to resume from.
        log_every: steps per compiled chunk, progress update and checkpoint.
        callback: ``callback(step, net, metrics) -> bool | None``, called after each chunk with the
            latest row of metrics; returning True stops the run (e.g. for live evaluation).

    Returns:
        ``(net, history)``, or ``(net, history, state)`` with ``return_state``; ``history`` maps
        ``step``, ``kl_weight`` (with a prior) or
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
    check_reward_gradient(gradient, net)
    step = _RewardStep(key, reward_fn, name, batch_size, baseline, gradient)

    def per_step(steps):
        weights = jax.vmap(schedule)(steps) if schedule is not None else jnp.full(steps.shape, value)
        weights = jnp.asarray(weights, jnp.result_type(float))
        check_per_step(name, weights, steps, num_steps, positive=False)
        return {name: weights}

    def describe(row):
        return f"objective={row['objective']:.5g}±{row['objective_stderr']:.2g} reward={row['reward']:.4g}"

    net, history, state = run_steps(
        net, optimizer, step, name="fit_reward", num_steps=num_steps, log_every=log_every, clip_grad=clip_grad,
        max_consecutive_skips=max_consecutive_skips, checkpoint=checkpoint, resume=resume, progress=progress,
        describe=describe, per_step=per_step, operands=(prior,), callback=callback)  # fmt: skip
    return (net, history, state) if return_state else (net, history)


class _RewardStep(LoopStep):
    key: PRNGKeyArray
    reward_fn: Callable = eqx.field(static=True)
    name: str = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    baseline: str = eqx.field(static=True)
    gradient: str = eqx.field(static=True)

    def __call__(self, params, static, carry, t, inputs, prior):
        weight = inputs[self.name]
        (loss, stats), grads = jax.value_and_grad(self.loss, has_aux=True)(params, static, t, weight, prior)
        return loss, grads, {self.name: weight, **stats._asdict()}, carry

    def loss(self, params, static, t, weight, prior):
        return reward_loss(eqx.combine(params, static), jax.random.fold_in(self.key, t), reward_fn=self.reward_fn,
                           prior=prior, num_samples=self.batch_size, baseline=self.baseline, gradient=self.gradient,
                           has_aux=True,
                           **{self.name: weight})  # fmt: skip

    def explain(self, net, t, prior):
        reward, log_q, log_prior = _rewards(self, net, jnp.int32(t), prior)
        return (describe_non_finite("reward", reward, "samples") or describe_non_finite("ln q", log_q, "samples")
                or describe_non_finite("ln prior", log_prior, "samples"))


@eqx.filter_jit
def _rewards(step: _RewardStep, net, t, prior):
    """The rewards, ``ln q`` and ``ln prior`` of the samples that step ``t`` drew (for the message of a stopped run)."""
    q = Autoregressive(net, allowed=None if prior is None else prior.allowed)
    x = q.sample(jax.random.fold_in(step.key, t), (step.batch_size,))
    log_prior = jnp.zeros(step.batch_size) if prior is None else prior.log_prob(x)
    return jax.vmap(step.reward_fn)(x), q.log_prob(x), log_prior


def _check_unused(name: str, given: bool, when: str) -> None:
    if given:
        raise ValueError(f"{name} has no effect {when}")
