"""Sampling throughput and log-prob+gradient time, each beside an in-run baseline (JSON lines).

- ``made_sample_cached``: arjax's default sampler for MADE (one jitted ``lax.scan`` over positions
  using MADE's ``decode_step`` fast path, vmapped batch). Baselines: ``made_sample_generic`` (the
  same scan rerunning the full net at every position, ``cached=False``) and
  ``made_sample_python_loop`` (N full passes driven from Python with a jitted per-position step,
  as the PyTorch VAN reference samples: a host round-trip per position).
- ``made_log_prob_grad``: one jitted ``value_and_grad`` of the mean log-prob on a batch; compile
  time is reported apart from the steady-state time. Baseline ``made_log_prob``: the forward pass.

Run: python benchmarks/sampling.py [--positions 256] [--batch 1024] [--repeats 3]
"""

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import arjax
from arjax.allowed import masked_log_softmax


def emit(name, value, unit, **extra):
    print(json.dumps({"name": name, "value": round(float(value), 6), "unit": unit, **extra}), flush=True)


def timed(fn, *args, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return first - best, best


def python_loop_sampler(net, batch):
    @eqx.filter_jit
    def position_step(net, x, i, key):
        logits = jax.vmap(net)(x)[:, i]
        log_p = masked_log_softmax(logits, None)
        token = jax.random.categorical(key, log_p).astype(jnp.int32)
        return x.at[:, i].set(token)

    def run(net, key):
        x = jnp.zeros((batch, net.num_positions), jnp.int32)
        for i in range(net.num_positions):
            x = position_step(net, x, i, jax.random.fold_in(key, i))
        return x

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, batch = args.positions, args.batch
    config = dict(N=n, K=2, batch=batch, width=args.width, depth=args.depth, device=str(jax.devices()[0]))
    net = arjax.nn.MADE(num_positions=n, num_categories=2, width=args.width, depth=args.depth, key=jax.random.key(0))
    key = jax.random.key(1)

    sample = eqx.filter_jit(lambda net, key, cached: arjax.sample(net, key, (batch,), cached=cached))
    for cached, name in [(True, "made_sample_cached"), (False, "made_sample_generic_baseline")]:
        compile_s, run_s = timed(sample, net, key, cached, repeats=args.repeats)
        emit(name, batch / run_s, "samples/s", compile_s=round(compile_s, 3), **config)

    loop = python_loop_sampler(net, batch)
    compile_s, run_s = timed(loop, net, key, repeats=1)
    emit("made_sample_python_loop_baseline", batch / run_s, "samples/s", **config)

    x = sample(net, key, True)

    @eqx.filter_jit
    def log_prob(net, x):
        return arjax.Autoregressive(net).log_prob(x).mean()

    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(log_prob))
    compile_s, run_s = timed(value_and_grad, net, x, repeats=args.repeats)
    emit("made_log_prob_grad_compile", compile_s, "s", **config)
    emit("made_log_prob_grad", run_s * 1e3, "ms", **config)
    _, run_s = timed(log_prob, net, x, repeats=args.repeats)
    emit("made_log_prob_forward_baseline", run_s * 1e3, "ms", **config)


if __name__ == "__main__":
    main()
