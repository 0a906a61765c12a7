"""Correctness checks and timings of arjax's nets on one accelerator, in one short run (≤ 8 minutes).

Run through ``benchmarks/gpu.sh`` (it installs the carried wheels first); ``--cpu-dry-run`` runs
every check and every timed function at tiny sizes on the CPU, to test this script without a GPU.

Checks (exactness tests' small cases, float32 at ``precision="highest"``, so TF32 cannot move a
sample across a CDF boundary): for a MADE, a PixelCNN and a Transformer with random weights,

- ``check_normalised``: ``Σ_x p(x) = 1`` by enumeration of every sequence (``K^N`` of them);
- ``check_cached_equals_generic``: the cached sampler (``decode_step``) and the generic one (a
  full pass per position) draw identical samples for the same key, with equal log-probabilities;
- ``check_chi_square``: a chi-square test of cached samples against the enumerated probabilities.

Each check prints ``{"name": "check_…", "value": 1 or 0, "unit": "pass", ...}``; the script exits
with status 1 after the timings if any check failed.

Timings (``*_samples_per_s``, ``*_step_s``), each compiled ahead of time, warmed up, best of
``--repeats``, at batch sizes that fill an H200 (``--scale`` multiplies them), beside a float32
matmul peak measured in the same run:

- MADE ``N=256``, width 1024, depth 2 (the VAN 16×16 MADE): cached sampling, VFE training step
  (Z₂, clip 1, Adam) on ``IsingSquare(16)``;
- ``PixelCNN.van_default(16)``: cached sampling, log-prob + gradient, VFE training step;
- Transformer ``N=256, d=256``, 4 heads, 4 layers: KV-cache sampling, MLE step (``nll`` + Adam).

Every line carries the device's name; the first lines give the versions and the device.

Run: bash benchmarks/gpu.sh [--cpu-dry-run] [--repeats 3] [--scale 1.0]
"""

import argparse
import json
import math
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import arjax
from arjax.nn import MADE, PixelCNN, Transformer
from arjax.objectives import free_energy_loss, nll
from arjax.targets import IsingSquare
from arjax.testing import all_sequences, chi_square_pvalue

FAILED = []
START = time.perf_counter()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU: exercise every path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every timed batch size")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="skip the timings not yet started after this many seconds (default 7 minutes)")
    args = parser.parse_args()
    if args.cpu_dry_run:
        jax.config.update("jax_platforms", "cpu")
    device = jax.devices()[0]
    name = getattr(device, "device_kind", str(device))
    emit("versions", 0, "info", jax=jax.__version__, backend=jax.default_backend(), device=name,
         arjax=arjax.__version__, dry_run=args.cpu_dry_run)  # fmt: skip
    with jax.default_matmul_precision("highest"):
        run_checks(name, num_samples=2_000 if args.cpu_dry_run else 100_000)
        run_timings(name, args)
    if FAILED:
        print(json.dumps({"name": "failed_checks", "value": len(FAILED), "unit": "count", "which": FAILED}))
        sys.exit(1)


def emit(name, value, unit, **extra):
    record = {"name": name, "value": float(f"{float(value):.6g}"), "unit": unit}
    record.update({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in extra.items()})
    print(json.dumps(record), flush=True)


# ------------------------------------------------------------------------------------ checks


def small_nets():
    """Random nets small enough to enumerate (``K^N`` ≤ 4096), pushed away from uniform."""
    key = jax.random.key(0)
    nets = {
        "made": MADE(num_positions=9, num_categories=2, width=32, depth=2, key=key),
        "pixelcnn": PixelCNN(3, 2, depth=3, width=8, half_kernel=1, residual=True, key=key),
        "pixelcnn_periodic_k3": PixelCNN(2, 3, depth=2, width=8, half_kernel=1, padding="periodic",
                                         final_conv=False, key=key),  # fmt: skip
        "transformer": Transformer(num_positions=8, num_categories=2, d_model=16, num_heads=2, key=key),
    }
    return {k: jax.tree.map(lambda a: 4 * a if eqx.is_inexact_array(a) else a, net) for k, net in nets.items()}


def run_checks(device, num_samples):
    for label, net in small_nets().items():
        n, k = net.num_positions, net.num_categories
        xs = all_sequences(n, k)
        log_p = np.asarray(eqx.filter_jit(lambda net, xs: arjax.Autoregressive(net).log_prob(xs))(net, xs), np.float64)
        total = float(np.exp(log_p).sum())
        check(f"check_normalised_{label}", abs(total - 1) < 1e-4, device, sum_p=total, sequences=int(xs.shape[0]))

        key = jax.random.key(1)
        sample = eqx.filter_jit(lambda net, key, cached: arjax.sample_and_log_prob(net, key, (4096,), cached=cached))
        x_cached, lp_cached = sample(net, key, True)
        x_generic, lp_generic = sample(net, key, False)
        same = bool(jnp.all(x_cached == x_generic))
        lp_diff = float(jnp.max(jnp.abs(lp_cached - lp_generic)))
        check(f"check_cached_equals_generic_{label}", same and lp_diff < 1e-4, device, max_log_prob_diff=lp_diff,
              sequences=4096)  # fmt: skip

        draws, _ = eqx.filter_jit(lambda net, key: arjax.sample_and_log_prob(net, key, (num_samples,)))(net, key)
        p_value = chi_square_pvalue(np.asarray(draws), np.exp(log_p))
        check(f"check_chi_square_{label}", p_value > 1e-3, device, p_value=p_value, samples=num_samples)


def check(name, passed, device, **extra):
    if not passed:
        FAILED.append(name)
    emit(name, 1 if passed else 0, "pass", device=device, **extra)


# ----------------------------------------------------------------------------------- timings


def run_timings(device, args):
    dry = args.cpu_dry_run

    def batch(full, tiny):
        return tiny if dry else max(1, int(full * args.scale))

    size = 256 if dry else 8192
    a = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    _, matmul_s = timed(jax.jit(jnp.dot), a, a, repeats=max(5, args.repeats))
    peak = 2 * size**3 / matmul_s
    emit("matmul_peak", peak / 1e12, "TFLOP/s", size=size, dtype="float32", precision="highest", device=device)

    L = 4 if dry else 16
    target = IsingSquare(L)
    made = MADE(num_positions=L * L, num_categories=2, depth=2, width=4 * L * L, key=jax.random.key(0))
    pixelcnn = (PixelCNN(L, 2, depth=3, width=8, half_kernel=1, final_conv=False, key=jax.random.key(0)) if dry
                else PixelCNN.van_default(L, key=jax.random.key(0)))  # fmt: skip
    n, d = (16, 16) if dry else (256, 256)
    transformer = Transformer(n, 2, d_model=d, num_heads=4, num_layers=2 if dry else 4, key=jax.random.key(0))
    r = args.repeats
    timings = [
        ("made_sample", lambda: time_sampling("made", made, batch(65536, 8), device, r)),
        ("made_vfe_step", lambda: time_vfe_step("made", made, target, batch(16384, 8), device, r)),
        ("pixelcnn_sample", lambda: time_sampling("pixelcnn", pixelcnn, batch(16384, 8), device, r)),
        ("pixelcnn_log_prob_grad", lambda: time_log_prob_grad("pixelcnn", pixelcnn, batch(8192, 8), device, r, peak)),
        ("pixelcnn_vfe_step", lambda: time_vfe_step("pixelcnn", pixelcnn, target, batch(4096, 8), device, r)),
        ("transformer_sample", lambda: time_sampling("transformer", transformer, batch(4096, 8), device, r)),
        ("transformer_mle_step", lambda: time_mle_step("transformer", transformer, batch(512, 4), device, r, peak)),
    ]
    for label, run in timings:
        elapsed = time.perf_counter() - START
        if elapsed > args.budget_s:
            emit(f"{label}_skipped", elapsed, "s", reason=f"past --budget-s {args.budget_s:g}", device=device)
        else:
            run()
    emit("total_time", time.perf_counter() - START, "s", device=device)


def timed(fn, *args, repeats):
    """Compile ahead of time, warm up, best of ``repeats``; returns ``(compile s, best s)``."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - start)
    return compile_s, best


def time_sampling(label, net, batch, device, repeats):
    params, static = eqx.partition(net, eqx.is_inexact_array)
    sample = jax.jit(lambda p, key: arjax.sample(eqx.combine(p, static), key, (batch,)))
    compile_s, run_s = timed(sample, params, jax.random.key(1), repeats=repeats)
    emit(f"{label}_sample_cached_samples_per_s", batch / run_s, "samples/s", batch=batch, compile_s=compile_s,
         N=net.num_positions, device=device)  # fmt: skip


def time_log_prob_grad(label, net, batch, device, repeats, peak):
    params, static = eqx.partition(net, eqx.is_inexact_array)
    x = jax.random.bernoulli(jax.random.key(2), 0.5, (batch, net.num_positions)).astype(jnp.int32)

    def loss(p, x):
        return jnp.mean(arjax.Autoregressive(eqx.combine(p, static)).log_prob(x))

    compile_s, run_s = timed(jax.jit(jax.value_and_grad(loss)), params, x, repeats=repeats)
    useful = 3 * batch * pixelcnn_forward_flops(net)
    emit(f"{label}_log_prob_grad_step_s", run_s, "s", batch=batch, compile_s=compile_s,
         fraction_of_matmul_peak=useful / run_s / peak, device=device)  # fmt: skip


def pixelcnn_forward_flops(net: PixelCNN) -> float:
    """Forward FLOPs per sequence over the unmasked taps (edges counted as interior)."""
    h, w, k = net.half_kernel, net.width, net.num_categories
    taps = h * (2 * h + 1) + h
    channels = [k] + [w] * (net.depth - 1) + [w if net.final_conv else k]
    macs = sum((taps if j == 0 else taps + 1) * channels[j] * channels[j + 1] for j in range(net.depth))
    return 2 * (macs + (w * k if net.final_conv else 0)) * net.num_positions


def time_vfe_step(label, net, target, batch, device, repeats):
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    params, static = eqx.partition(net, eqx.is_inexact_array)

    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(
            lambda p: free_energy_loss(eqx.combine(p, static), key, target, 0.44, batch, symmetry="z2")
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    args = (params, optimizer.init(params), jax.random.key(1))
    compile_s, run_s = timed(jax.jit(step), *args, repeats=repeats)
    emit(f"{label}_vfe_step_s", run_s, "s", batch=batch, samples_per_s=batch / run_s, compile_s=compile_s,
         device=device)  # fmt: skip


def time_mle_step(label, net, batch, device, repeats, peak):
    optimizer = optax.adam(1e-3)
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (batch, net.num_positions)).astype(jnp.int32)

    def step(net, opt_state, x):
        loss, grads = jax.value_and_grad(nll)(net, x)
        updates, opt_state = optimizer.update(grads, opt_state, net)
        return optax.apply_updates(net, updates), opt_state, loss

    compile_s, run_s = timed(jax.jit(step), net, optimizer.init(net), x, repeats=repeats)
    d, n, layers = net.d_model, net.num_positions, net.num_layers
    useful = 6 * layers * 12 * d * d * batch * n + 3 * layers * 2 * batch * n * n * d
    emit(f"{label}_mle_step_s", run_s, "s", batch=batch, compile_s=compile_s, N=n, d_model=d, num_layers=layers,
         fraction_of_matmul_peak=useful / run_s / peak, device=device)  # fmt: skip


if __name__ == "__main__":
    main()
