"""Atomic, integrity-checked checkpoints of a training state pytree and its metrics history.

A checkpoint is a sealed file (``arjax.sealed``): a header line ``arjax-checkpoint v2 <bytes>
<sha256>``, then the state's leaves (``eqx.tree_serialise_leaves``) followed by the history as
``.npz``. A truncated or altered file fails the length or hash check and is never loaded.
Format v1 (``arjax-checkpoint-v1``) held the optimiser state inside ``optax.apply_if_finite``'s
wrapper; its files are refused with a message saying so.
"""

import io
import os

import equinox as eqx
import numpy as np

from arjax.sealed import read_sealed, write_sealed

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError"]

_KIND = "checkpoint"
_VERSION = 2
_V1_MAGIC = b"arjax-checkpoint-v1\n"


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupted, or does not match the run that reads it."""


def save_checkpoint(path: str | os.PathLike, state, history: dict[str, np.ndarray]) -> None:
    """Write ``state`` (a pytree of arrays) and ``history`` to ``path`` atomically (temp file + rename).

    Example:
        >>> import jax.numpy as jnp, numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
        >>> save_checkpoint(path, (jnp.ones(2), jnp.int32(3)), {"loss": np.array([1.0, 0.5])})
        >>> state, history = load_checkpoint(path, (jnp.zeros(2), jnp.int32(0)))
        >>> int(state[1]), history["loss"].tolist()
        (3, [1.0, 0.5])
    """
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    np.savez(buffer, **history)
    write_sealed(path, _KIND, _VERSION, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, like):
    """Read ``(state, history)`` written by ``save_checkpoint``; ``like`` gives the pytree structure.

    Raises:
        CheckpointError: the file is not an arjax checkpoint, is in an older format, is truncated
            or corrupted, or its arrays do not match the shapes and dtypes of ``like``.
    """
    with open(path, "rb") as f:
        if f.read(len(_V1_MAGIC)) == _V1_MAGIC:
            raise CheckpointError(
                f"{path} is a format-v1 checkpoint of an earlier arjax, whose optimiser state was wrapped in "
                "optax.apply_if_finite; this arjax cannot resume it. Start the run afresh (or finish it with "
                "the arjax that wrote it)"
            )
    _, payload = read_sealed(path, _KIND, (_VERSION,), CheckpointError)
    buffer = io.BytesIO(payload)
    try:
        state = eqx.tree_deserialise_leaves(buffer, like)
        with np.load(buffer) as arrays:
            history = {name: arrays[name] for name in arrays.files}
    except (RuntimeError, ValueError, TypeError, OSError) as error:
        raise CheckpointError(
            f"{path} does not match this run (different model, optimiser or settings?): {error}"
        ) from error
    return state, history
