"""``TrainState``: where a run stands, so that a later call continues it as if it had never stopped."""

from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
import optax

__all__ = ["TrainState", "check_resume"]


class TrainState(NamedTuple):
    """Everything a ``fit_*`` call needs to continue a run: what its checkpoint file holds, in memory.

    A call with ``return_state=True`` returns one; passing it as ``resume=`` to the next call
    (with the same ``key``, optimiser and settings, and ``num_steps`` the new end of the run)
    continues the run bit-identically to one uninterrupted call.

    Attributes:
        net: the net after ``step`` steps.
        opt_state: the optimiser state after ``step`` steps.
        step: the number of steps taken; the next step is numbered ``step``.
        history: the metrics of steps ``0 … step - 1`` (and any per-chunk evaluations).
    """

    net: eqx.Module
    opt_state: optax.OptState
    step: int
    history: dict[str, np.ndarray]


def check_resume(resume, net: eqx.Module, optimizer: optax.GradientTransformation) -> TrainState:
    """Return ``resume`` after checking that it is a ``TrainState`` of ``net``'s structure and ``optimizer``'s state.

    >>> import jax, optax
    >>> from arjax.nn import MeanField
    >>> net = MeanField(3, 2, key=jax.random.key(0))
    >>> state = TrainState(net, optax.adam(0.1).init(net), 0, {})
    >>> check_resume(state, MeanField(3, 2, key=jax.random.key(1)), optax.adam(0.1)).step
    0
    """
    if not isinstance(resume, TrainState):
        raise TypeError(
            f"resume must be the TrainState returned by an earlier call with return_state=True, got "
            f"{type(resume).__name__}"
        )
    if _signature(resume.net) != _signature(net):
        raise ValueError(
            "resume holds the state of another net: its structure, shapes or dtypes differ from net's "
            f"({type(resume.net).__name__} vs {type(net).__name__})"
        )
    params = eqx.filter(net, eqx.is_inexact_array)
    if _signature(resume.opt_state) != _signature(jax.eval_shape(optimizer.init, params)):
        raise ValueError("resume holds the state of another optimiser: its opt_state does not match optimizer.init")
    return resume


def _signature(tree):
    """The tree structure with each array leaf as its shape and dtype (arrays and ``ShapeDtypeStruct`` alike)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(tuple(leaf.shape), leaf.dtype) if hasattr(leaf, "dtype") else leaf for leaf in leaves]
