"""NetKet ``FastARNNConv2D`` timed call by call on request, for ``benchmarks/pixelcnn_vs_netket.py``.

Runs in NetKet's own venv (``/tmp/nkvenv``, built by ``../shared/peers/netket_bench.sh``) and takes
its models from ``netket_bench.py`` (``PEERS_DIR`` on ``sys.path``; the shape knobs ``L``, ``KH``,
``KW``, ``FEAT``, ``LAYERS`` come from the environment as there). One command per line on stdin,
one JSON line back on stdout for each:

- ``prepare NAME``: compile ahead of time and run once (warm-up); answers ``compile_s``;
- ``run NAME``: one timed call; answers its wall seconds (``time.perf_counter``) and CPU seconds
  (``time.process_time``, all threads of this process);
- ``quit``.

``NAME`` is ``sample_b<batch>`` (``ARDirectSampler``, exact sampling of ``batch`` configurations, as
``netket_bench.py`` does it) or ``grad_b<batch>`` (``value_and_grad`` of the mean log-probability of
``batch`` random configurations). The parent alternates these calls with its own, so that both
see the same load from other processes.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.environ["PEERS_DIR"])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import netket as nk  # noqa: E402
import netket_bench as bench  # noqa: E402
from netket.sampler.autoreg import ARDirectSamplerState  # noqa: E402


def main():
    hilbert = nk.hilbert.Spin(0.5, bench.N)
    sampler = nk.sampler.ARDirectSampler(hilbert, dtype=bench.DT)
    model = bench.make("fastconv", hilbert)
    x0 = jnp.asarray(hilbert.random_state(jax.random.PRNGKey(0), 2), dtype=bench.DT)
    variables = {k: v for k, v in model.init(jax.random.PRNGKey(1), x0).items() if k != "cache"}
    compiled = {}

    def build(name):
        kind, batch = name.rsplit("_b", 1)
        batch = int(batch)
        if kind == "sample":

            def sample(v, key):
                samples, _ = sampler._sample_chain(model, v, ARDirectSamplerState(key=key), batch)
                return samples

            return sample, (variables, jax.random.PRNGKey(2))
        if kind == "grad":
            xs = jnp.asarray(hilbert.random_state(jax.random.PRNGKey(3), batch), dtype=bench.DT)

            def loss(params, x):
                return jnp.mean(2.0 * model.apply({"params": params}, x).real)  # log p = 2 Re log psi

            return jax.value_and_grad(loss), (variables["params"], xs)
        raise ValueError(name)

    reply({"ready": True, "versions": f"netket {nk.__version__} jax {jax.__version__}"})
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "quit":
            break
        name = rest[0]
        if command == "prepare":
            fn, args = build(name)
            start = time.perf_counter()
            call = jax.jit(fn).lower(*args).compile()
            compile_s = time.perf_counter() - start
            jax.block_until_ready(call(*args))
            compiled[name] = (call, args)
            reply({"name": name, "compile_s": compile_s})
        elif command == "run":
            call, args = compiled[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(call(*args))
            reply({"name": name, "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu})


def reply(record):
    print("WORKER " + json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
