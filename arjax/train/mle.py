"""``fit_mle``: maximum likelihood (forward KL to data) by shuffled minibatches."""

import math
import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.allowed import Allowed
from arjax.distribution import Autoregressive
from arjax.families.layout import net_layout
from arjax.objectives import nll
from arjax.parallel import batch_sharding, check_batch_divisible
from arjax.train.guard import describe_non_finite
from arjax.train.loop import LoopStep, check_count, run_steps
from arjax.train.microbatch import check_microbatch_size, value_and_grad_by_microbatch
from arjax.train.state import TrainState

__all__ = ["fit_mle", "check_data", "evaluate_nll"]


def fit_mle(
    net: eqx.Module,
    data: Int[Array, "M N"],
    *,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    key: PRNGKeyArray,
    microbatch_size: int | None = None,
    num_steps: int | None = None,
    num_epochs: int | None = None,
    context: Float[Array, "M C"] | None = None,
    eval_data: Int[Array, "E N"] | None = None,
    eval_context: Float[Array, "E C"] | None = None,
    allowed: Allowed = None,
    clip_grad: float | None = None,
    max_consecutive_skips: int = 10,
    checkpoint: str | os.PathLike | None = None,
    resume: TrainState | None = None,
    return_state: bool = False,
    log_every: int = 50,
    progress: bool = True,
    callback: Callable | None = None,
    mesh: Mesh | None = None,
) -> tuple[eqx.Module, dict[str, np.ndarray]] | tuple[eqx.Module, dict[str, np.ndarray], TrainState]:
    r"""Fit ``net`` to ``data`` by minimising the negative log-likelihood ``-E_data[ln p(x)]``.

    Minibatches of ``batch_size`` sequences are drawn without replacement from a fresh
    permutation of ``data`` every epoch (``⌊M / batch_size⌋`` steps; the remainder of a
    permutation is skipped), drawn once per epoch and at the start of each compiled chunk. Step
    ``t`` depends on ``key`` and ``t`` only, so a run resumed from ``checkpoint`` or ``resume``
    ends bit-identical to an uninterrupted one. A step whose loss, gradient, updated parameters
    or optimiser state is not finite is skipped (``history["finite"]`` is False there);
    ``max_consecutive_skips`` in a row stop the run with ``arjax.train.NonFiniteError``.

    Args:
        data: integer tokens in ``0..K-1``, one sequence per row.
        microbatch_size: cut each minibatch into microbatches of this many sequences whose
            gradients are averaged in one ``lax.scan`` (the same step up to rounding; see
            ``arjax.train.value_and_grad_by_microbatch``): less memory traffic per pass, which
            made a Transformer's step on a CPU 1.2–1.3× faster at 2 sequences of 256 tokens
            (docs/performance.md). ``None``: the whole minibatch in one pass.
        num_steps: the run's length in steps; give this or ``num_epochs``.
        num_epochs: the run's length in passes over ``data`` (``⌊M / batch_size⌋`` steps each).
        context: optional per-sequence conditioning, aligned with ``data`` (and
            ``eval_context`` with ``eval_data``).
        eval_data: held-out sequences, scored every ``log_every`` steps and at the end.
        allowed: passed to ``Autoregressive``; data with a disallowed token has infinite NLL.
        clip_grad: global-norm clipping of the gradient.
        max_consecutive_skips: the number of non-finite steps in a row that stops the run.
        checkpoint: a file path, written atomically every ``log_every`` steps and resumed from.
        resume: the ``TrainState`` of an earlier call (``return_state=True``) to continue from,
            with ``num_steps`` the new end of the run; it takes precedence over ``checkpoint``.
        return_state: also return the ``TrainState`` to resume from.
        callback: ``callback(step, net, metrics) -> bool | None`` after every ``log_every``
            steps; returning True stops the run.
        mesh: split each minibatch over the devices of this ``jax.sharding.Mesh`` (see
            ``arjax.parallel``); ``batch_size`` must be divisible by their number.

    Returns:
        ``(net, history)``, or ``(net, history, state)`` with ``return_state``. ``history`` has
        per-step ``step``, ``nll`` (nats per sequence of the minibatch), ``bits_per_token`` and
        ``finite``; with ``eval_data`` also ``eval_step``, ``eval_nll`` and ``eval_bits_per_token``
        every ``log_every`` steps.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from arjax.nn import MADE
        >>> data = jnp.array([[0, 0, 1], [1, 1, 0]] * 32)
        >>> net = MADE(num_positions=3, num_categories=2, key=jax.random.key(0))
        >>> net, history = fit_mle(net, data, optimizer=optax.adam(3e-2), batch_size=16, num_steps=200,
        ...                        key=jax.random.key(1), progress=False)
        >>> bool(history["nll"][-1] < 0.8)   # the data's entropy is ln 2 ≈ 0.693
        True
    """
    data = check_data(net, data, "data")
    context = _check_context(net, context, data, "context")
    if eval_data is not None:
        eval_data = check_data(net, eval_data, "eval_data")
        eval_context = _check_context(net, eval_context, eval_data, "eval_context")
    elif eval_context is not None:
        raise ValueError("eval_context was given without eval_data")
    check_count("batch_size", batch_size, minimum=1)
    check_count("log_every", log_every, minimum=1)
    sharding = batch_sharding(mesh)
    check_batch_divisible("batch_size", batch_size, sharding)
    if microbatch_size is not None:
        check_microbatch_size(microbatch_size, batch_size)
        check_batch_divisible("microbatch_size", microbatch_size, sharding)
    if batch_size > data.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the number of sequences in data ({data.shape[0]})")
    steps_per_epoch = data.shape[0] // batch_size
    if (num_steps is None) == (num_epochs is None):
        raise ValueError(f"give exactly one of num_steps and num_epochs, got {num_steps=} and {num_epochs=}")
    if num_epochs is not None:
        check_count("num_epochs", num_epochs, minimum=1)
        num_steps = num_epochs * steps_per_epoch
    check_count("num_steps", num_steps, minimum=1)
    step = _MLEStep(key, allowed, batch_size, steps_per_epoch, sharding, microbatch_size)
    num_tokens = net.num_positions

    def on_chunk(model, done):
        if eval_data is None:
            return {}
        value = evaluate_nll(model, eval_data, context=eval_context, allowed=allowed, batch_size=max(batch_size, 256))
        return dict(eval_step=done, eval_nll=value, eval_bits_per_token=_bits(value, num_tokens))

    def describe(row):
        text = f"nll={row['nll']:.4g}"
        return text + (f" eval={row['eval_nll']:.4g}" if "eval_nll" in row else "")

    net, history, state = run_steps(
        net, optimizer, step, name="fit_mle", num_steps=num_steps, log_every=log_every, clip_grad=clip_grad,
        max_consecutive_skips=max_consecutive_skips, checkpoint=checkpoint, resume=resume, progress=progress,
        describe=describe, operands=(data, context), on_chunk=on_chunk, callback=callback, mesh=mesh)  # fmt: skip
    return (net, history, state) if return_state else (net, history)


class _MLEStep(LoopStep):
    key: PRNGKeyArray
    allowed: Allowed
    batch_size: int = eqx.field(static=True)
    steps_per_epoch: int = eqx.field(static=True)
    sharding: Any = eqx.field(static=True)
    microbatch_size: int | None = eqx.field(static=True)

    def __call__(self, params, static, order, t, inputs, data, context):
        order = jax.lax.cond(t % self.steps_per_epoch == 0, lambda: self.init_carry(t, data, context), lambda: order)
        rows = self.minibatch_rows(order, t)
        batch = (data[rows], None if context is None else context[rows])

        def loss(params, batch):
            x, c = batch
            return nll(eqx.combine(params, static), x, context=c, allowed=self.allowed)

        value, grads = value_and_grad_by_microbatch(loss, params, batch, microbatch_size=self.microbatch_size,
                                                    sharding=self.sharding)  # fmt: skip
        return value, grads, dict(nll=value, bits_per_token=_bits(value, static.num_positions)), order

    def init_carry(self, t, data, context):
        """The permutation of ``data`` for the epoch of step ``t``."""
        return jax.random.permutation(jax.random.fold_in(self.key, t // self.steps_per_epoch), data.shape[0])

    def minibatch_rows(self, order, t):
        """The rows of ``data`` in step ``t``'s minibatch, given its epoch's permutation ``order``."""
        return jax.lax.dynamic_slice_in_dim(order, (t % self.steps_per_epoch) * self.batch_size, self.batch_size)

    def explain(self, net, t, data, context):
        rows = np.asarray(self.minibatch_rows(self.init_carry(t, data, context), t))
        log_p = _log_probs(net, data[rows], None if context is None else context[rows], self.allowed)
        text = describe_non_finite("the log-likelihood", log_p, "sequences of the minibatch")
        return text and f"{text} (data rows {sorted(rows[~np.isfinite(log_p)].tolist())[:10]})"


def evaluate_nll(
    net: eqx.Module,
    data: Int[Array, "M N"],
    *,
    context: Float[Array, "M C"] | None = None,
    allowed: Allowed = None,
    batch_size: int = 1024,
) -> float:
    """Mean negative log-likelihood (nats per sequence) of ``data``, in jitted batches of ``batch_size``.

    >>> import jax, jax.numpy as jnp
    >>> from arjax.nn import MeanField
    >>> net = MeanField(num_positions=4, num_categories=2, init_scale=0.0, key=jax.random.key(0))
    >>> round(evaluate_nll(net, jnp.zeros((10, 4), jnp.int32)), 4)   # 4 ln 2
    2.7726
    """
    data = check_data(net, data, "data")
    context = _check_context(net, context, data, "context")
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        c = None if context is None else context[start : start + batch_size]
        total += float(_sum_log_prob(net, data[start : start + batch_size], c, allowed))
    return -total / data.shape[0]


def check_data(net: eqx.Module, data, name: str = "data") -> jax.Array:
    """Return ``data`` as int32 after checking it is a non-empty ``[M, N]`` integer array in ``0..K-1``.

    For a net with real, circular or positive positions: a non-empty real ``[M, N]`` array whose
    every value lies in its position's support, returned as floats.
    """
    array = np.asarray(data)
    n, k = net.num_positions, net.num_categories
    if k is None:
        return _check_values(net, array, name)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer tokens in 0..{k - 1}, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != n:
        raise ValueError(f"{name} must have shape (num_sequences, {n}), got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {array.shape}")
    low, high = array.min(), array.max()
    if low < 0 or high >= k:
        bad = np.argwhere((array < 0) | (array >= k))[0]
        raise ValueError(
            f"{name} must hold tokens in 0..{k - 1}; {name}[{bad[0]}, {bad[1]}] = {array[tuple(bad)]}"
        )
    return jnp.asarray(array, jnp.int32)


def _check_values(net, array: np.ndarray, name: str) -> jax.Array:
    layout = net_layout(net)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold real values (tokens as whole numbers), got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != net.num_positions:
        raise ValueError(f"{name} must have shape (num_sequences, {net.num_positions}), got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {array.shape}")
    values = jnp.asarray(array, layout.value_dtype)
    inside = np.asarray(layout.in_support(values))
    if not inside.all():
        row, col = np.argwhere(~inside)[0]
        family = layout.families[col]
        raise ValueError(f"{name}[{row}, {col}] = {array[row, col]} is outside the support of position {col} "
                         f"({family!r}: {family.support})")  # fmt: skip
    return values


def _check_context(net, context, data, name):
    if context is None:
        if getattr(net, "context_shape", None) is not None:
            raise ValueError(f"{name} is required: the net is conditional with context_shape {net.context_shape}")
        return None
    context = jnp.asarray(context)
    expected = (data.shape[0], *(getattr(net, "context_shape", None) or ()))
    if getattr(net, "context_shape", None) is None or context.shape != expected:
        raise ValueError(f"{name} must have shape {expected} (one row per sequence), got {context.shape}")
    return context


def _bits(nats_per_sequence, num_tokens):
    return nats_per_sequence / (num_tokens * math.log(2))


@eqx.filter_jit
def _sum_log_prob(net, x, context, allowed):
    return -nll(net, x, context=context, allowed=allowed) * x.shape[0]


@eqx.filter_jit
def _log_probs(net, x, context, allowed):
    return Autoregressive(net, context, allowed).log_prob(x)
