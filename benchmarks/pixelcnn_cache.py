"""PixelCNN (VAN default, 16×16) on this machine: cached vs naive sampling, row-matmul vs lax.conv gradient.

Prints JSON lines {"name", "value", "unit"[, "note"]}. Protocol as in the NetKet peer benchmark:
AOT compile (``jit(...).lower(...).compile()``, reported as ``compile``), then one warm-up call
and the best of REPS timed calls (``block_until_ready``); slow baselines get a single call.
Baselines run in the same process on the same weights:

* naive sampling, what the PyTorch VAN code does: ``lax.scan`` over sites with a full ``net(x)``
  per site (as ``arjax.sample(..., cached=False)``). Every site costs the same full pass, so it
  is timed over the first NAIVE_SITES sites and extrapolated to all ``L²``.
* ``lax.conv_general_dilated`` with the masked ``(h+1)×(2h+1)`` upper half of each kernel (as
  NetKet's ARNNConv2D), against arjax's row-Toeplitz matmul.

The 1-minute load average is printed: other processes on this 2-core machine slow every number.

Env knobs: L (16), BATCHES ("100 1000"), NAIVE_SITES (8), GRAD_B (1000), REPS (2),
SECTIONS ("sample grad").

Reference points on this 2-core CPU (see /work/shared/peers/README.md): PyTorch VAN reruns the
net per site, 23 s per training step at batch 100 (≈4.4 samples/s); NetKet FastARNNConv2D
reaches 174 / 108 samples/s at batch 100 / 1000 and takes 16.6 s for log-prob + grad at 1000.
"""

import json
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import arjax
from arjax.nn.pixelcnn import PixelCNN

L = int(os.environ.get("L", 16))
BATCHES = [int(b) for b in os.environ.get("BATCHES", "100 1000").split()]
NAIVE_SITES = int(os.environ.get("NAIVE_SITES", 8))
GRAD_B = int(os.environ.get("GRAD_B", 1000))
REPS = int(os.environ.get("REPS", 2))
SECTIONS = os.environ.get("SECTIONS", "sample grad").split()


def main():
    emit("versions", f"jax {jax.__version__} backend {jax.default_backend()} ncpu {os.cpu_count()}", "info")
    emit("load_average_1min", round(os.getloadavg()[0], 2), "processes")
    net = PixelCNN.van_default(L, key=jax.random.key(0))
    tag = f"pixelcnn_van_L{L}"
    params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_array)))
    emit(f"{tag}/n_params", params, "count", "stored, including masked kernel entries")

    if "sample" in SECTIONS:
        for B in BATCHES:
            fn = eqx.filter_jit(lambda net, key, B=B: arjax.sample(net, key, (B,), cached=True))
            compile_s, best, runs = timed(fn, net, jax.random.key(1), reps=REPS)
            emit(f"{tag}/sample_cached_B{B}/compile", round(compile_s, 3), "s")
            emit(f"{tag}/sample_cached_B{B}/time", round(best, 4), "s", f"runs {runs}")
            emit(f"{tag}/sample_cached_B{B}/samples_per_s", round(B / best, 2), "samples/s")
        for B in BATCHES:
            fn = eqx.filter_jit(lambda net, key, B=B: naive_sample(net, key, B, NAIVE_SITES))
            compile_s, best, runs = timed(fn, net, jax.random.key(1), reps=1)
            total = best * L * L / NAIVE_SITES
            note = f"{best:.2f} s for the first {NAIVE_SITES} of {L * L} sites, extrapolated"
            emit(f"{tag}/sample_naive_B{B}/compile", round(compile_s, 3), "s")
            emit(f"{tag}/sample_naive_B{B}/time", round(total, 2), "s", note)
            emit(f"{tag}/sample_naive_B{B}/samples_per_s", round(B / total, 3), "samples/s", note)

    if "grad" in SECTIONS:
        x = jax.random.bernoulli(jax.random.key(2), 0.5, (GRAD_B, L * L)).astype(jnp.int32)
        error = float(jnp.max(jnp.abs(jax.vmap(net)(x[:8]) - jax.vmap(lambda s: conv_logits(net, s))(x[:8]))))
        emit(f"{tag}/conv_vs_rowmatmul_max_abs_logit_diff", error, "1")
        for impl, logits in (("rowmatmul", lambda n, s: n(s)), ("conv", conv_logits)):
            loss = make_loss(logits)
            fn = eqx.filter_jit(eqx.filter_value_and_grad(loss))
            compile_s, best, runs = timed(fn, net, x, reps=REPS if impl == "rowmatmul" else 1)
            emit(f"{tag}/logp_grad_{impl}_B{GRAD_B}/compile", round(compile_s, 3), "s")
            emit(f"{tag}/logp_grad_{impl}_B{GRAD_B}/time", round(best, 4), "s", f"runs {runs}")
            compile_s, best, runs = timed(eqx.filter_jit(loss), net, x, reps=REPS if impl == "rowmatmul" else 1)
            emit(f"{tag}/logp_fwd_{impl}_B{GRAD_B}/time", round(best, 4), "s", f"runs {runs}")
    emit("load_average_1min", round(os.getloadavg()[0], 2), "processes")


def naive_sample(net, key, B, sites):
    """Ancestral sampling that reruns the whole net at every site, over the first ``sites`` sites."""

    def one(key):
        def step(x, i):
            logits = net(x)[i]
            token = jax.random.categorical(jax.random.fold_in(key, i), logits).astype(jnp.int32)
            return x.at[i].set(token), None

        return lax.scan(step, jnp.zeros(net.num_positions, jnp.int32), jnp.arange(sites))[0]

    return jax.vmap(one)(jax.random.split(key, B))


def make_loss(logits):
    def loss(net, x):
        def log_prob(s):
            rows = jax.nn.log_softmax(logits(net, s))
            return jnp.take_along_axis(rows, s[:, None], axis=1).sum()

        return jnp.mean(jax.vmap(log_prob)(x))

    return loss


def conv_logits(net: PixelCNN, x):
    """The same net evaluated with masked ``lax.conv`` layers (zero padding, as VAN and NetKet)."""
    a = conv(net.first, jax.nn.one_hot(x, net.num_categories).reshape(L, L, -1))
    for block in net.blocks:
        a = block.combine(a, conv(block.conv, block.inputs(a)))
    if net.head is not None:
        a = net.head(a)
    return a.reshape(L * L, -1)


def conv(layer, u):
    h = layer.half_kernel
    mask = np.ones((h + 1, 2 * h + 1), np.float32)
    mask[h, h + (0 if layer.exclusive else 1) :] = 0
    kernel = jnp.transpose(layer.weight[:, :, : h + 1] * mask, (2, 3, 1, 0))
    dimensions = ("NHWC", "HWIO", "NHWC")
    out = lax.conv_general_dilated(u[None], kernel, (1, 1), [(h, 0), (h, h)], dimension_numbers=dimensions)
    return out[0] + layer.bias


def timed(fn, *args, reps):
    """AOT compile, then one warm-up call when ``reps > 1``; returns (compile s, best s, all runs)."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    if reps > 1:
        jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(round(time.perf_counter() - start, 3))
    return compile_s, min(runs), runs


def emit(name, value, unit, note=None):
    record = {"name": name, "value": value, "unit": unit}
    if note:
        record["note"] = note
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
