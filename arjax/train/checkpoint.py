"""Atomic, integrity-checked checkpoints of a training state pytree and its metrics history.

File layout: a magic line, the payload length and its SHA-256, then the payload (the state's
leaves via ``eqx.tree_serialise_leaves``, followed by the history as ``.npz``). A truncated or
altered file fails the length or hash check and is never loaded.
"""

import hashlib
import io
import os
import struct
import tempfile
from pathlib import Path

import equinox as eqx
import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError"]

_MAGIC = b"arjax-checkpoint-v1\n"
_HEADER = struct.Struct("<Q32s")


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
    payload = buffer.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(_MAGIC + _HEADER.pack(len(payload), hashlib.sha256(payload).digest()) + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, like):
    """Read ``(state, history)`` written by ``save_checkpoint``; ``like`` gives the pytree structure.

    Raises:
        CheckpointError: the file is not an arjax checkpoint, is truncated or corrupted, or its
            arrays do not match the shapes and dtypes of ``like``.
    """
    data = Path(path).read_bytes()
    if not data.startswith(_MAGIC):
        raise CheckpointError(f"{path} is not an arjax checkpoint (missing header); refusing to load it")
    header_end = len(_MAGIC) + _HEADER.size
    if len(data) < header_end:
        raise CheckpointError(f"{path} is truncated ({len(data)} bytes); refusing to load it")
    length, digest = _HEADER.unpack(data[len(_MAGIC) : header_end])
    payload = data[header_end:]
    if len(payload) != length:
        raise CheckpointError(f"{path} is truncated: payload has {len(payload)} of {length} bytes")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is corrupted: SHA-256 of its contents does not match its header")
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
