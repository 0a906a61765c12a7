"""Sampling throughput of the causal Transformer: KV-cache decoding vs naive recomputation.

The naive sampler reruns the full net on the partial sequence at every position and keeps row i
(N full passes per sequence); the cached sampler calls ``decode_step`` once per position. Both
are one ``lax.scan`` over positions, ``vmap``-ed over sequences, compiled ahead of time so that
compilation is excluded. Prints JSON lines ``{"name", "value", "unit"}``.

    python benchmarks/transformer_cache.py --num-positions 256 --batch 256
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
from jax import lax

from arjax.nn.transformer import Transformer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-positions", type=int, default=256)
    parser.add_argument("--num-categories", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--naive-batch", type=int, default=None, help="sequences for the slow naive sampler (default: --batch)"
    )
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    net = Transformer(
        num_positions=args.num_positions,
        num_categories=args.num_categories,
        d_model=args.d_model,
        num_heads=args.num_heads,
        num_layers=args.num_layers,
        key=jax.random.key(0),
    )
    keys = jax.random.split(jax.random.key(1), args.batch)
    config = {
        "N": args.num_positions,
        "K": args.num_categories,
        "d_model": args.d_model,
        "num_heads": args.num_heads,
        "num_layers": args.num_layers,
        "device": str(jax.devices()[0]),
    }

    cached_rate, cached_x = _samples_per_second(_sample_cached, net, keys, args.repeats)
    naive_batch = min(args.naive_batch or args.batch, args.batch)
    naive_rate, naive_x = _samples_per_second(_sample_naive, net, keys[:naive_batch], 1)
    same = float(jnp.mean(cached_x[:naive_batch] == naive_x))

    _emit("transformer_cached_sampling", cached_rate, "samples/s", batch=args.batch, **config)
    _emit("transformer_naive_sampling", naive_rate, "samples/s", batch=naive_batch, **config)
    _emit("transformer_cache_speedup", cached_rate / naive_rate, "x", fraction_same_tokens=same, **config)


def _sample_cached(net, key):
    def step(carry, i):
        cache, previous = carry
        logits, cache = net.decode_step(cache, i, previous)
        token = jax.random.categorical(jax.random.fold_in(key, i), logits)
        return (cache, token), token

    _, x = lax.scan(step, (net.init_cache(), jnp.zeros((), jnp.int32)), jnp.arange(net.num_positions))
    return x


def _sample_naive(net, key):
    def step(x, i):
        logits = net(x)[i]
        token = jax.random.categorical(jax.random.fold_in(key, i), logits)
        return x.at[i].set(token), None

    x, _ = lax.scan(step, jnp.zeros(net.num_positions, jnp.int32), jnp.arange(net.num_positions))
    return x


def _samples_per_second(sampler, net, keys, repeats):
    run = jax.jit(lambda net, keys: jax.vmap(lambda k: sampler(net, k))(keys)).lower(net, keys).compile()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x = jax.block_until_ready(run(net, keys))
        best = min(best, time.perf_counter() - start)
    return len(keys) / best, x


def _emit(name, value, unit, **extra):
    print(json.dumps({"name": name, "value": value, "unit": unit, **extra}), flush=True)


if __name__ == "__main__":
    main()
