"""The loop every ``fit_*`` shares: jitted ``lax.scan`` chunks, progress bar, history, checkpoints.

A loop runs ``lax.scan`` over ``log_every`` steps per compiled call (no host round-trip per
step), reports after each chunk, and checkpoints at chunk boundaries. Step ``t`` draws all its
randomness from ``jax.random.fold_in(key, t)`` and chunks always start at multiples of
``log_every``, so a run resumed from a checkpoint ends bit-identical to an uninterrupted one.
"""

from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from arjax.parallel import replicate
from arjax.train.checkpoint import load_checkpoint, save_checkpoint


def run_steps(
    net: eqx.Module,
    optimizer: optax.GradientTransformation,
    step_fn: Callable,
    *,
    num_steps: int,
    log_every: int,
    checkpoint,
    progress: bool,
    describe: Callable[[dict], str],
    operands=(),
    on_chunk: Callable | None = None,
    callback: Callable | None = None,
    mesh=None,
    init_carry: Callable | None = None,
):
    """Run ``step_fn(params, static, opt_state, carry, t, *operands) -> (params, opt_state, carry, metrics)``.

    ``carry`` is state that lives within one compiled chunk (e.g. the current epoch's shuffle):
    ``init_carry(t0, *operands)`` makes it at the chunk's first step ``t0`` (None without
    ``init_carry``), so it must be a function of the step alone to keep resumed runs identical.

    ``on_chunk(net, step) -> dict`` adds rows (e.g. evaluation metrics) after each chunk;
    ``callback(step, net, metrics) -> bool | None`` is called after each chunk with the latest
    metrics and stops the run when it returns True. With ``robust_optimizer`` the history gains a
    ``finite`` column: False where a non-finite update was skipped. With a ``mesh`` the state is replicated on
    its devices (``step_fn`` shards the batch) and only process 0 writes checkpoints.
    """
    params, static = eqx.partition(net, eqx.is_inexact_array)
    state = (params, optimizer.init(params), jnp.zeros((), jnp.int32))
    history: dict[str, np.ndarray] = {}
    if checkpoint is not None and Path(checkpoint).exists():
        state, history = load_checkpoint(checkpoint, state)
    state, operands = replicate((state, operands), mesh)

    @eqx.filter_jit
    def run_chunk(params, opt_state, steps, operands):
        def body(state, t):
            params, opt_state, carry, row = step_fn(state[0], static, state[1], state[2], t, *operands)
            if isinstance(opt_state, optax.ApplyIfFiniteState):
                row = {**row, "finite": opt_state.last_finite}
            return (params, opt_state, carry), row

        carry = None if init_carry is None else init_carry(steps[0], *operands)
        (params, opt_state, _), rows = jax.lax.scan(body, (params, opt_state, carry), steps)
        return params, opt_state, rows

    params, opt_state, done = state[0], state[1], int(state[2])
    bar = tqdm(total=num_steps, initial=done, disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
    while done < num_steps:
        end = min((done // log_every + 1) * log_every, num_steps)
        steps = jnp.arange(done, end, dtype=jnp.int32)
        params, opt_state, rows = run_chunk(params, opt_state, steps, operands)
        rows = {"step": np.asarray(steps), **jax.tree_util.tree_map(np.asarray, rows)}
        latest = {k: v[-1] for k, v in rows.items()}
        if on_chunk is not None:
            extra = {k: np.asarray(v)[None] for k, v in on_chunk(eqx.combine(params, static), end).items()}
            rows.update(extra)
            latest.update({k: v[0] for k, v in extra.items()})
        history = {k: np.concatenate([history[k], v]) if k in history else v for k, v in rows.items()}
        done = end
        if checkpoint is not None and jax.process_index() == 0:
            save_checkpoint(checkpoint, (params, opt_state, jnp.asarray(done, jnp.int32)), history)
        bar.update(len(steps))
        bar.set_postfix_str(describe(latest))
        if callback is not None and callback(done, eqx.combine(params, static), latest):
            break
    bar.close()
    return eqx.combine(params, static), history


def robust_optimizer(optimizer: optax.GradientTransformation, clip_grad: float | None) -> optax.GradientTransformation:
    """``optimizer`` behind optional global-norm clipping; non-finite updates are always skipped."""
    if clip_grad is not None and not clip_grad > 0:
        raise ValueError(f"clip_grad must be > 0, got {clip_grad!r}")
    transforms = [optax.clip_by_global_norm(clip_grad)] if clip_grad is not None else []
    return optax.apply_if_finite(optax.chain(*transforms, optimizer), max_consecutive_errors=_NEVER)


def check_count(name: str, value, *, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a Python integer ≥ ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


_NEVER = 2**31 - 1  # optax applies a non-finite update after this many in a row; never do that
