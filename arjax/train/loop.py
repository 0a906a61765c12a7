"""The loop every ``fit_*`` shares: compiled ``lax.scan`` chunks, the finite guard, progress, history, checkpoints.

A loop runs ``lax.scan`` over ``log_every`` steps per compiled call (no host round-trip per
step), reports after each chunk, and checkpoints at chunk boundaries. Step ``t`` draws all its
randomness from ``jax.random.fold_in(key, t)`` and chunks always end at multiples of
``log_every``, so a run resumed from a checkpoint or a ``TrainState`` ends bit-identical to an
uninterrupted one.

The compiled chunk is one module-level function whose static arguments are the objective's
configuration (a ``LoopStep``), the optimiser and the net's structure, and whose traced arguments
are everything that changes between calls of one configuration: parameters, optimiser state,
keys, the first and last step, and the per-step inputs (β, a KL weight), which are evaluated
from their schedules outside the chunk. It always scans ``log_every`` steps and leaves those past
the end of the call undone (``lax.cond``), so it is compiled once per configuration and reused by
every later call, however a run is cut into calls and whatever its schedules.
"""

import abc
import math
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from arjax.parallel import replicate
from arjax.train.checkpoint import load_checkpoint, save_checkpoint
from arjax.train.guard import NonFiniteError, StepCheck, check_step, describe_step
from arjax.train.progress import Progress
from arjax.train.state import TrainState, check_resume


class LoopStep(eqx.Module):
    """One objective's step for ``run_steps``: its fields are the objective's configuration.

    Array fields (keys) are traced; every other field is static and part of the compiled chunk's
    cache key, so two calls with equal steps share one compilation.
    """

    @abc.abstractmethod
    def __call__(self, params, static, carry, t, inputs, *operands):
        """``(loss, grads, row, carry)`` of step ``t`` with its ``inputs`` (see ``run_steps``'s ``per_step``)."""

    def init_carry(self, t, *operands):
        """The within-chunk state at a chunk's first step ``t`` (a function of ``t`` alone); None by default."""
        return None

    def explain(self, net, t, *operands) -> str | None:
        """Say which input made the loss of step ``t`` non-finite (run on the host when a run stops)."""
        return None


def run_steps(
    net: eqx.Module,
    optimizer: optax.GradientTransformation,
    step: LoopStep,
    *,
    name: str,
    num_steps: int,
    log_every: int,
    clip_grad: float | None,
    max_consecutive_skips: int,
    checkpoint,
    resume: TrainState | None,
    progress: bool,
    describe: Callable[[dict], str],
    per_step: Callable | None = None,
    operands=(),
    on_chunk: Callable | None = None,
    callback: Callable | None = None,
    mesh=None,
) -> tuple[eqx.Module, dict[str, np.ndarray], TrainState]:
    """Run steps ``resume.step`` (or the checkpoint's, or 0) … ``num_steps - 1``; return ``(net, history, state)``.

    Each step applies ``optimizer`` (after global-norm clipping at ``clip_grad``) to the gradient
    ``step`` returns, unless the step is not finite (``arjax.train.guard``): then the old parameters
    and optimiser state are kept and the history's ``finite`` column is False. After
    ``max_consecutive_skips`` skipped steps in a row the run stops with ``NonFiniteError``.
    ``per_step(steps) -> pytree`` gives each chunk's per-step inputs (arrays with a leading axis
    over ``steps``), evaluated eagerly outside the compiled chunk; step ``t`` receives its slice.
    ``on_chunk(net, step) -> dict`` adds rows (e.g. evaluation metrics) after each chunk;
    ``callback(step, net, metrics) -> bool | None`` is called after each chunk with the latest
    metrics and stops the run when it returns True. With a ``mesh`` the state is replicated on its
    devices (``step`` shards the batch) and only process 0 writes checkpoints.
    """
    check_count("max_consecutive_skips", max_consecutive_skips, minimum=1)
    clip_grad = check_clip_grad(clip_grad)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    history: dict[str, np.ndarray] = {}
    if resume is not None:
        resume = check_resume(resume, net, optimizer)
        params, opt_state, done, history = eqx.filter(resume.net, eqx.is_inexact_array), *resume[1:]
    elif checkpoint is not None and Path(checkpoint).exists():
        like = (params, optimizer.init(params), jnp.zeros((), jnp.int32))
        (params, opt_state, done), history = load_checkpoint(checkpoint, like)
        done = int(done)
    else:
        opt_state, done = optimizer.init(params), 0
    params, opt_state, operands = replicate((params, opt_state, operands), mesh)
    traced = dict(clip_grad=clip_grad, max_skips=jnp.int32(max_consecutive_skips), operands=operands)
    num_params = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))

    skips, streak = jnp.zeros((), jnp.int32), None
    bar = Progress(num_steps, initial=done, enabled=progress and jax.process_index() == 0)
    while done < num_steps:
        end = min((done // log_every + 1) * log_every, num_steps)
        steps = jnp.asarray(np.arange(done, done + log_every, dtype=np.int32))  # no eager op to compile
        inputs = None if per_step is None else per_step(steps)
        params, opt_state, skips, rows, checks, ran = _run_chunk(
            step, optimizer, static, params, opt_state, skips, steps, inputs, jnp.int32(end), **traced)
        count = int(np.asarray(ran).sum())
        rows = {"step": np.arange(done, done + count, dtype=np.int32),
                **jax.tree_util.tree_map(lambda v: np.asarray(v)[:count], rows)}
        for i, finite in enumerate(rows["finite"]):  # the first step of the current streak of skipped steps
            streak = None if finite else streak or (done + i, jax.tree_util.tree_map(lambda c: c[i], checks))
        history = _extend(history, rows)
        done += count
        stopped = int(skips) >= max_consecutive_skips
        latest = {k: v[-1] for k, v in rows.items()}
        if on_chunk is not None and not stopped:
            extra = {k: np.asarray(v)[None] for k, v in on_chunk(eqx.combine(params, static), end).items()}
            history = _extend(history, extra)
            latest.update({k: v[0] for k, v in extra.items()})
        state = TrainState(eqx.combine(params, static), opt_state, done, history)
        if checkpoint is not None and jax.process_index() == 0:
            save_checkpoint(checkpoint, (params, opt_state, jnp.asarray(done, jnp.int32)), history)
        skipped = int(np.sum(~history["finite"]))
        bar.update(done, describe(latest) + (f" skipped={skipped}" if skipped else ""))
        if stopped:
            bar.close()
            first, check = streak
            raise _stopped(name, step, state, first, check, num_params, max_consecutive_skips, checkpoint, operands)
        if callback is not None and callback(done, state.net, latest):
            break
    bar.close()
    net = eqx.combine(params, static)
    return net, history, TrainState(net, opt_state, done, history)


@eqx.filter_jit
def _run_chunk(step, optimizer, static, params, opt_state, skips, steps, inputs, end, *, clip_grad, max_skips,
               operands):  # fmt: skip
    """The ``steps`` (consecutive) that are ``< end``, until ``max_skips`` of them are skipped in a row."""

    def one(state, t_inputs):
        params, opt_state, carry, skips = state
        loss, grads, row, carry = step(params, static, carry, *t_inputs, *operands)
        if clip_grad is not None:
            grads, _ = optax.clip_by_global_norm(clip_grad).update(grads, optax.EmptyState())
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        check = check_step(loss, grads, new_params, new_opt_state)
        finite = check.finite
        params, opt_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(finite, new, old), (new_params, new_opt_state), (params, opt_state))
        skips = jnp.where(finite, 0, skips + 1)
        return (params, opt_state, carry, skips), ({**row, "finite": finite}, check)

    def idle(state, t_inputs):
        rows = jax.eval_shape(one, state, t_inputs)[1]
        return state, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), rows)

    def body(state, t_inputs):
        ran = (t_inputs[0] < end) & (state[3] < max_skips)
        state, out = jax.lax.cond(ran, one, idle, state, t_inputs)
        return state, (*out, ran)

    carry = step.init_carry(steps[0], *operands)
    state = (params, opt_state, carry, skips)
    (params, opt_state, _, skips), (rows, checks, ran) = jax.lax.scan(body, state, (steps, inputs))
    return params, opt_state, skips, rows, checks, ran


def _stopped(name, step, state, first, check: StepCheck, num_params, limit, checkpoint, operands) -> NonFiniteError:
    explanation = None if np.isfinite(check.loss) else step.explain(state.net, first, *operands)
    last = "the initial ones" if first == 0 else f"those after step {first - 1}, the last finite one"
    where = f"; {checkpoint} holds them" if checkpoint is not None else "; the error's .state holds them"
    message = (
        f"{name} stopped at step {state.step}: {describe_step(check, num_params, explanation)} at step {first}, "
        f"the first of {limit} consecutive steps skipped as non-finite (max_consecutive_skips={limit}). "
        f"The parameters and optimiser state are {last}{where}"
    )
    return NonFiniteError(message, state=state, first_step=first, checkpoint=checkpoint)


def _extend(history: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**history, **{k: np.concatenate([history[k], v]) if k in history else v for k, v in rows.items()}}


def check_clip_grad(clip_grad: float | None):
    """``clip_grad`` as a traced scalar (None stays None) after checking that it is > 0."""
    if clip_grad is None:
        return None
    if not clip_grad > 0:
        raise ValueError(f"clip_grad must be > 0, got {clip_grad!r}")
    return jnp.asarray(clip_grad, jnp.result_type(float))


def check_per_step(name: str, values, steps, num_steps: int, *, positive: bool) -> None:
    """Raise ``ValueError`` at the first of ``steps`` before ``num_steps`` whose value is not finite and > 0 (≥ 0).

    >>> check_per_step("beta", jnp.array([0.5, 0.0]), jnp.array([3, 4]), 10, positive=True)
    Traceback (most recent call last):
    ValueError: beta must be finite and > 0 at every step, got 0.0 at step 4
    """
    values, steps = np.asarray(values), np.asarray(steps)
    valid = np.isfinite(values) & ((values > 0) if positive else (values >= 0))
    bad = np.flatnonzero(~valid & (steps < num_steps))
    if bad.size:
        bound = "> 0" if positive else "≥ 0"
        raise ValueError(f"{name} must be finite and {bound} at every step, got {values[bad[0]]} at step "
                         f"{steps[bad[0]]}")


def check_count(name: str, value, *, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a Python integer ≥ ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
