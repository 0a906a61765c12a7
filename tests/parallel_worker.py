"""Run a few data-parallel steps of fit_mle / fit_free_energy and print their losses as JSON.

Usage: ``python parallel_worker.py OUT [PROCESS_ID NUM_PROCESSES PORT]``. With the three extra
arguments the process joins a ``jax.distributed`` run over 127.0.0.1 (CPU collectives via gloo).
Set ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` for D local devices.
"""

import json
import sys

import jax

if len(sys.argv) > 2:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    process_id, num_processes, port = map(int, sys.argv[2:5])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id)

import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.experimental.multihost_utils import process_allgather  # noqa: E402

from arjax.nn import MADE  # noqa: E402
from arjax.parallel import batch_sharding, data_mesh  # noqa: E402
from arjax.sampling import sample_and_log_prob  # noqa: E402
from arjax.targets import IsingSquare  # noqa: E402
from arjax.train import fit_free_energy, fit_mle  # noqa: E402


def run(mesh):
    net = MADE(num_positions=9, num_categories=2, width=16, depth=1, key=jax.random.key(0))
    x, log_p = sample_and_log_prob(net, jax.random.key(1), (8,), sharding=batch_sharding(mesh))
    x, log_p = process_allgather((x, log_p), tiled=True)
    data = np.random.default_rng(0).integers(0, 2, (64, 9))
    _, mle = fit_mle(net, data, optimizer=optax.adam(1e-2), batch_size=16, num_steps=6, key=jax.random.key(2),
                     log_every=3, progress=False, mesh=mesh)
    _, micro = fit_mle(net, data, optimizer=optax.adam(1e-2), batch_size=16, microbatch_size=8, num_steps=6,
                       key=jax.random.key(2), log_every=3, progress=False, mesh=mesh)
    _, vfe = fit_free_energy(net, IsingSquare(3), 0.4, optimizer=optax.adam(1e-2), num_steps=6, batch_size=16,
                             key=jax.random.key(3), log_every=3, progress=False, mesh=mesh)
    try:
        fit_mle(net, data, optimizer=optax.adam(1e-2), batch_size=10, num_steps=1, key=jax.random.key(2), mesh=mesh)
        error = None
    except ValueError as e:
        error = str(e)
    return dict(samples=np.asarray(x).tolist(), log_prob=np.asarray(log_p).tolist(), mle=mle["nll"].tolist(),
                mle_microbatches=micro["nll"].tolist(),
                vfe=vfe["free_energy"].tolist(), indivisible_error=error)


if __name__ == "__main__":
    result = dict(devices=len(jax.devices()), sharded=run(data_mesh()))
    if len(sys.argv) == 2:
        result["single"] = run(None)
    if jax.process_index() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f)
