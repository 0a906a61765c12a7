"""Data parallelism: split the sample or minibatch axis over the devices of a ``jax.sharding.Mesh``.

The parameters are replicated on every device of the mesh and each device draws and scores its
share of the batch; ``jit`` inserts the all-reduces of the loss and the gradients. The same code
runs on one host with several devices (GPUs, or CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``) and across processes started with
``jax.distributed.initialize`` (the mesh then spans ``jax.devices()`` of all processes).
Sharding never changes the random numbers: a sharded run draws the same samples as one device.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["data_mesh", "batch_sharding", "replicate", "constrain_batch", "check_batch_divisible"]


def data_mesh(devices=None, axis_name: str = "data") -> Mesh:
    """A one-axis mesh over ``devices`` (default: ``jax.devices()``, every process's devices).

    >>> mesh = data_mesh()
    >>> mesh.axis_names, mesh.size == len(jax.devices())
    (('data',), True)
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return Mesh(np.asarray(devices), (axis_name,))


def batch_sharding(mesh: Mesh | None) -> NamedSharding | None:
    """Sharding of a batch whose leading axis is split over the mesh's first axis (None → None)."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, e.g. arjax.parallel.data_mesh(); got {type(mesh).__name__}")
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicate(tree, mesh: Mesh | None):
    """Place every array of ``tree`` on all devices of ``mesh`` (identity when ``mesh`` is None)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda leaf: jax.device_put(leaf, sharding) if _is_array(leaf) else leaf, tree)


def constrain_batch(x, sharding: NamedSharding | None):
    """Ask ``jit`` to split the leading axis of every array in ``x`` as ``sharding`` says."""
    if sharding is None:
        return x
    return jax.tree_util.tree_map(lambda leaf: jax.lax.with_sharding_constraint(leaf, sharding), x)


def check_batch_divisible(name: str, size: int, sharding: NamedSharding | None) -> None:
    """Raise ``ValueError`` unless ``size`` splits evenly over the devices of ``sharding``'s batch axis."""
    if sharding is None:
        return
    shards = sharding.mesh.shape[sharding.spec[0]]
    if size % shards:
        raise ValueError(f"{name}={size} must be divisible by the {shards} devices of the mesh's batch axis")


def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))
