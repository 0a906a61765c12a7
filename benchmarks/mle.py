"""Training throughput of ``arjax.train.fit_mle`` beside a naive hand-written Optax loop.

The model and data are those of ``examples/quantum_bitstrings.py``: a causal Transformer
(``--d-model`` 64, 4 heads, 2 layers, K = 2) on bitstrings of ``--positions`` = 12 qubits measured
from a Sycamore-style random circuit (``examples/circuits.py``), minibatches of ``--batch`` 256.

- ``fit_mle_steps_per_s`` (one line per ``--data-sizes`` M): ``fit_mle`` compiles its scanned chunk
  afresh on every call, so it is timed for ``--steps`` and for 2 × ``--steps`` steps in chunks of
  ``--steps`` (``log_every``, no eval data, no progress bar), and the rate is the marginal one,
  ``--steps / (t(2S) - t(S))`` with the two runs alternated ``--repeats`` times (best of each):
  compilation cancels. With one repeat on a loaded machine the difference is noise-dominated.
- ``naive_loop_steps_per_s``: the way one writes it first — ``jax.jit`` of one step
  (``value_and_grad(nll)`` + ``optax.adam``), a fresh numpy permutation of the data every epoch,
  each minibatch sliced on the host and sent to the device, the loss brought back to the host
  (``float``) after every step. Compiled and warmed up before timing.
- ``jit_step_steps_per_s``: the same jitted step with the minibatches already on the device and no
  host round-trip per step (``block_until_ready`` only at the end): the cost of the step alone.
- ``permutation_time``: one ``jax.random.permutation`` of M rows, jitted, which ``fit_mle`` draws
  once per epoch (and at the start of each compiled chunk) to pick its minibatches.
- ``mle_step_flops`` (XLA's ``cost_analysis`` of the jitted step) and the FLOP/s of each loop.

Run: python benchmarks/mle.py [--data-sizes 1000 100000] [--steps 100] [--repeats 3]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import compile_timed, emit, emit_environment, timed

from arjax.nn import Transformer
from arjax.objectives import nll
from arjax.train import fit_mle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from circuits import circuit_distribution, sample_bitstrings  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=12, help="qubits n (sequence length)")
    parser.add_argument("--depth", type=int, default=14, help="circuit cycles")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--data-sizes", type=int, nargs="+", default=[1000, 100_000],
                        help="numbers M of training bitstrings")  # fmt: skip
    parser.add_argument("--steps", type=int, default=100, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    emit_environment()
    n, batch = args.positions, args.batch
    cols = 4 if n % 4 == 0 and n >= 8 else None
    p = circuit_distribution(n, args.depth, 0, layout="grid" if cols else "line", cols=cols)
    data = sample_bitstrings(p, max(args.data_sizes), np.random.default_rng(1))
    net = Transformer(n, 2, d_model=args.d_model, num_heads=args.heads, num_layers=args.layers, key=jax.random.key(0))
    config = dict(N=n, batch=batch, d_model=args.d_model, num_heads=args.heads, num_layers=args.layers)
    optimizer = optax.adam(1e-3)

    def step(net, opt_state, x):
        loss, grads = eqx.filter_value_and_grad(nll)(net, x)
        updates, opt_state = optimizer.update(grads, opt_state, net)
        return eqx.apply_updates(net, updates), opt_state, loss

    opt_state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))
    x0 = jnp.asarray(data[:batch])
    compiled, compile_s = compile_timed(jax.jit(step), net, opt_state, x0)
    cost = compiled.cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    emit("mle_step_flops", flops / 1e6, "MFLOP", **config)

    # The step alone: minibatches on the device, no host round-trip per step.
    batches = [jnp.asarray(data[i * batch : (i + 1) * batch]) for i in range(min(args.steps, len(data) // batch))]

    def run_device_loop(net, opt_state):
        for t in range(args.steps):
            net, opt_state, loss = compiled(net, opt_state, batches[t % len(batches)])
        return loss

    _, best = timed(run_device_loop, net, opt_state, repeats=args.repeats)
    emit("jit_step_steps_per_s", args.steps / best, "steps/s", flops_per_s=flops * args.steps / best / 1e9,
         flops_unit="GFLOP/s", compile_s=compile_s, **config)  # fmt: skip

    for m in args.data_sizes:
        train = data[:m]
        naive = naive_loop(compiled, net, opt_state, train, batch, args.steps, args.repeats)
        emit("naive_loop_steps_per_s", args.steps / naive, "steps/s", M=m, flops_per_s=flops * args.steps / naive / 1e9,
             flops_unit="GFLOP/s", note="jit per step, host permutation per epoch, host batches, float(loss) per step",
             **config)  # fmt: skip
        fit_s = fit_mle_marginal(net, train, batch, args.steps, args.repeats)
        emit("fit_mle_steps_per_s", args.steps / fit_s, "steps/s", M=m, flops_per_s=flops * args.steps / fit_s / 1e9,
             flops_unit="GFLOP/s", speedup_vs_naive=naive / fit_s, **config)  # fmt: skip
        permutation = jax.jit(lambda key: jax.random.permutation(key, m))
        _, perm_s = timed(permutation, jax.random.key(0), repeats=args.repeats)
        emit("permutation_time", perm_s * 1e3, "ms", M=m, fraction_of_fit_mle_step=perm_s / (fit_s / args.steps),
             note="jax.random.permutation of M rows, which fit_mle draws once per epoch and per chunk")  # fmt: skip
    emit("load_average_1min", os.getloadavg()[0], "processes")


def naive_loop(compiled, net, opt_state, train, batch, steps, repeats) -> float:
    """Best time of ``steps`` host-driven steps (after one warm-up step)."""
    rng = np.random.default_rng(0)
    per_epoch = len(train) // batch
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        losses = []
        for t in range(steps):
            if t % per_epoch == 0:
                order = rng.permutation(len(train))
            rows = order[(t % per_epoch) * batch : (t % per_epoch + 1) * batch]
            net, opt_state, loss = compiled(net, opt_state, jnp.asarray(train[rows]))
            losses.append(float(loss))
        best = min(best, time.perf_counter() - start)
    return best


def fit_mle_marginal(net, train, batch, steps, repeats) -> float:
    """Seconds for ``steps`` steps of ``fit_mle``, compilation excluded: best t(2S) - best t(S)."""

    def run(num_steps):
        start = time.perf_counter()
        fitted, _ = fit_mle(net, train, optimizer=optax.adam(1e-3), batch_size=batch, key=jax.random.key(1),
                            num_steps=num_steps, log_every=steps, progress=False)  # fmt: skip
        jax.block_until_ready(fitted)
        return time.perf_counter() - start

    one = two = float("inf")
    for _ in range(repeats):  # alternate, so that both see the same load from other processes
        one, two = min(one, run(steps)), min(two, run(2 * steps))
    return max(two - one, 1e-9)


if __name__ == "__main__":
    main()
