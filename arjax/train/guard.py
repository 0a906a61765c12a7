"""Non-finite steps: the per-step check that has them skipped, and the error that stops a run.

A step is *finite* when its loss, its gradient, the parameters after the update and the new
optimiser state are all finite; otherwise the loop keeps the old parameters and optimiser state.
``StepCheck`` counts the NaN and infinite entries of each, cheaply, inside the compiled step, so
that when a run stops the message can say which came first without recomputing anything.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

__all__ = ["StepCheck", "NonFiniteError", "check_step", "describe_non_finite", "describe_step"]


class StepCheck(NamedTuple):
    """The non-finite entries of one step, counted inside the compiled loop.

    Attributes:
        loss: the loss value.
        gradient: ``(NaN count, ±inf count)`` over all gradient entries.
        parameters: the same over the parameters after the update.
        optimizer_state: the same over the floating-point leaves of the new optimiser state.
    """

    loss: Float[Array, ""]
    gradient: Int[Array, "2"]
    parameters: Int[Array, "2"]
    optimizer_state: Int[Array, "2"]

    @property
    def finite(self):
        """True where the whole step is finite, so its update may be applied."""
        counts = self.gradient.sum(-1) + self.parameters.sum(-1) + self.optimizer_state.sum(-1)
        return jnp.isfinite(self.loss) & (counts == 0)


class NonFiniteError(FloatingPointError):
    """A run stopped after ``max_consecutive_skips`` consecutive non-finite steps.

    The message says what was non-finite at the first step of that streak. The parameters never
    took a non-finite update, so ``state`` (and the checkpoint, when there is one) holds the
    last finite parameters and optimiser state, with the history up to the stop.

    Attributes:
        state: a ``TrainState`` to resume from with ``resume=`` once the cause is fixed.
        first_step: the first step of the streak of skipped steps.
        checkpoint: the checkpoint file holding ``state``, or None.
    """

    def __init__(self, message: str, *, state, first_step: int, checkpoint):
        super().__init__(message)
        self.state = state
        self.first_step = first_step
        self.checkpoint = checkpoint


def check_step(loss: Float[ArrayLike, ""], grads: PyTree, params: PyTree, opt_state: PyTree) -> StepCheck:
    """Count the non-finite entries of one step's loss, gradient, updated parameters and optimiser state.

    >>> import jax.numpy as jnp
    >>> check = check_step(jnp.float32(1.0), [jnp.array([jnp.nan, 1.0])], [jnp.ones(2)], ())
    >>> check.gradient.tolist(), bool(check.finite)
    ([1, 0], False)
    """
    return StepCheck(jnp.asarray(loss), _counts(grads), _counts(params), _counts(opt_state))


def describe_non_finite(name: str, values: ArrayLike, of: str) -> str | None:
    """``"<name> is NaN for 3 and +inf for 1 of 8 <of>"``, or None when every value is finite.

    >>> describe_non_finite("energy", np.array([np.nan, 1.0, np.inf, 2.0]), "samples")
    'energy is NaN for 1 and +inf for 1 of 4 samples'
    >>> describe_non_finite("energy", np.ones(3), "samples") is None
    True
    """
    values = np.asarray(values)
    counts = {"NaN": np.isnan(values).sum(), "+inf": np.isposinf(values).sum(), "-inf": np.isneginf(values).sum()}
    parts = [f"{kind} for {count}" for kind, count in counts.items() if count]
    if not parts:
        return None
    return f"{name} is {' and '.join(parts)} of {values.size} {of}"


def describe_step(check: StepCheck, num_parameters: int, explanation: str | None) -> str:
    """Say what was non-finite at a skipped step, cause first (``explanation`` names the loss's inputs).

    >>> check = StepCheck(np.float32(1.0), np.array([0, 0]), np.array([3, 0]), np.array([0, 0]))
    >>> describe_step(check, 10, None)[:50]
    'the updated parameters are NaN in 3 of 10 entries '
    """
    if explanation is not None:
        return explanation
    if not np.isfinite(check.loss):
        return f"the loss is {float(check.loss)}"
    if np.sum(check.gradient):
        return f"the gradient is {_kinds(check.gradient)} in {int(np.sum(check.gradient))} of {num_parameters} entries"
    if np.sum(check.parameters):
        return (f"the updated parameters are {_kinds(check.parameters)} in {int(np.sum(check.parameters))} of "
                f"{num_parameters} entries (with a finite loss and gradient: check the learning rate and its schedule)")
    return (f"the optimiser state is {_kinds(check.optimizer_state)} in {int(np.sum(check.optimizer_state))} "
            "entries (with a finite loss, gradient and update: a gradient too large for its square?)")


def _kinds(counts) -> str:
    nan, inf = (int(c) for c in counts)
    return " or ".join(kind for kind, count in [("NaN", nan), ("infinite", inf)] if count)


def _counts(tree) -> Int[Array, "2"]:
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(leaf)]
    nan = sum((jnp.isnan(leaf).sum() for leaf in leaves), jnp.zeros((), jnp.int32))
    inf = sum((jnp.isinf(leaf).sum() for leaf in leaves), jnp.zeros((), jnp.int32))
    return jnp.stack([nan, inf]).astype(jnp.int32)
