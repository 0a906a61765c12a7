"""PixelCNN ``van_default(16)`` beside NetKet's ``FastARNNConv2D`` in the same run, same protocol.

Both nets: 16×16 lattice, 3 masked layers × 64 features, kernel ``(7, 13)`` in NetKet's terms
(VAN's half-kernel 6), float32. Both are timed the same way: compiled ahead of time
(``jit(...).lower(...).compile()``), one warm-up call, best of ``--repeats`` calls
(``block_until_ready``):

- exact ancestral sampling of ``batch`` = 100 and 1000 sequences (arjax: ``arjax.sample``, cached
  ``decode_step``; NetKet: ``ARDirectSampler`` with its per-layer caches), in samples/s;
- the gradient of the mean log-probability of 1000 random configurations
  (``jax.value_and_grad``), in seconds, with its forward pass beside it.

NetKet runs in its own venv through ``../shared/peers/netket_bench.sh`` (it builds
``/tmp/nkvenv`` with ``pip install netket`` the first time). The gradient's useful FLOPs (unmasked
taps only, edges counted as interior: 3 × the forward pass) are also set against a jitted float32
2048×2048 ``jnp.dot`` measured in the same run. The 1-minute load average is printed before
each part: other processes slow every number, and ratios survive a loaded machine better than
absolute times.

Run: python benchmarks/pixelcnn_vs_netket.py [--repeats 3] [--skip-netket]
"""

import argparse
import json
import os
import subprocess
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from common import emit, emit_environment, matmul_peak, timed

import arjax
from arjax.nn import PixelCNN

NETKET_SCRIPT = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "netket_bench.sh"
NETKET_TAG = "fastconv_L16_l3_f64_k7x13"
SAMPLE_BATCHES = (100, 1000)
GRAD_BATCH = 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-netket", action="store_true", help="time arjax only")
    args = parser.parse_args()

    emit_environment()
    peak = matmul_peak(2048, max(5, args.repeats))
    ours = time_arjax(args.repeats, peak)
    if args.skip_netket:
        return
    if not NETKET_SCRIPT.exists():
        emit("netket_skipped", 0, "info", reason=f"{NETKET_SCRIPT} not found")
        return
    emit("load_average_1min", os.getloadavg()[0], "processes", before="netket")
    peer = time_netket(args.repeats)
    for batch in SAMPLE_BATCHES:
        name = f"sample_b{batch}"
        if name in peer:
            emit(f"pixelcnn_{name}_speedup_vs_netket", ours[name] / peer[name], "x", arjax_samples_per_s=ours[name],
                 netket_samples_per_s=peer[name], target=3.0)  # fmt: skip
    if "grad" in peer:
        emit("pixelcnn_log_prob_grad_speedup_vs_netket", peer["grad"] / ours["grad"], "x", arjax_s=ours["grad"],
             netket_s=peer["grad"], batch=GRAD_BATCH, target=5.0)  # fmt: skip
    emit("load_average_1min", os.getloadavg()[0], "processes", after="netket")


def time_arjax(repeats: int, peak: float) -> dict:
    net = PixelCNN.van_default(16, key=jax.random.key(0))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    config = dict(net="PixelCNN.van_default(16)", N=256, K=2)
    ours = {}
    emit("load_average_1min", os.getloadavg()[0], "processes", before="arjax")
    for batch in SAMPLE_BATCHES:
        sample = jax.jit(lambda p, key, batch=batch: arjax.sample(eqx.combine(p, static), key, (batch,)))
        compile_s, run_s = timed(sample, params, jax.random.key(1), repeats=repeats)
        ours[f"sample_b{batch}"] = batch / run_s
        emit(f"arjax_pixelcnn_sample_b{batch}", batch / run_s, "samples/s", batch=batch, compile_s=compile_s,
             **config)  # fmt: skip

    x = jax.random.bernoulli(jax.random.key(3), 0.5, (GRAD_BATCH, 256)).astype(jnp.int32)

    def mean_log_prob(p, x):
        return jnp.mean(arjax.Autoregressive(eqx.combine(p, static)).log_prob(x))

    compile_s, grad_s = timed(jax.jit(jax.value_and_grad(mean_log_prob)), params, x, repeats=repeats)
    _, forward_s = timed(jax.jit(mean_log_prob), params, x, repeats=repeats)
    useful = 3 * GRAD_BATCH * forward_flops(net)
    ours["grad"] = grad_s
    emit("arjax_pixelcnn_log_prob_grad_b1000", grad_s, "s", compile_s=compile_s, forward_s=round(forward_s, 4),
         useful_gflop=round(useful / 1e9, 1), gflops_per_s=useful / grad_s / 1e9,
         fraction_of_matmul_peak=round(useful / grad_s / peak, 4), target_fraction=0.4, **config)  # fmt: skip
    return ours


def forward_flops(net: PixelCNN) -> float:
    """Forward FLOPs of one sequence over the unmasked taps (edges counted as interior)."""
    h, w, k = net.half_kernel, net.width, net.num_categories
    taps = h * (2 * h + 1) + h
    channels = [k] + [w] * (net.depth - 1) + [w if net.final_conv else k]
    macs = sum((taps if j == 0 else taps + 1) * channels[j] * channels[j + 1] for j in range(net.depth))
    return 2 * (macs + (w * k if net.final_conv else 0)) * net.num_positions


def time_netket(repeats: int) -> dict:
    """Run NetKet's FastARNNConv2D timings; returns samples/s per batch and the gradient's seconds."""
    env = dict(os.environ, MODELS="fastconv", SECTIONS="sample grad", BATCHES=" ".join(map(str, SAMPLE_BATCHES)),
               GRAD_B=str(GRAD_BATCH), REPS=str(repeats), L="16", KH="7", KW="13", FEAT="64", LAYERS="3")  # fmt: skip
    run = subprocess.run(["bash", str(NETKET_SCRIPT)], env=env, capture_output=True, text=True)
    found = {}
    for line in run.stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        name, value = record["name"], record["value"]
        for batch in SAMPLE_BATCHES:
            if name == f"{NETKET_TAG}/sample_B{batch}/samples_per_s" and value is not None:
                found[f"sample_b{batch}"] = float(value)
                emit(f"netket_fastconv_sample_b{batch}", value, "samples/s", batch=batch, peer="NetKet FastARNNConv2D")
        if name == f"{NETKET_TAG}/logp_grad_B{GRAD_BATCH}/time":
            found["grad"] = float(value)
            emit("netket_fastconv_log_prob_grad_b1000", value, "s", peer="NetKet FastARNNConv2D")
        if name == f"{NETKET_TAG}/logp_fwd_B{GRAD_BATCH}/time":
            emit("netket_fastconv_log_prob_forward_b1000", value, "s", peer="NetKet FastARNNConv2D")
        if name == "versions":
            emit("netket_versions", 0, "info", versions=value)
    if run.returncode != 0 or not found:
        emit("netket_failed", run.returncode, "exit code", stderr_tail=run.stderr[-500:])
    return found


if __name__ == "__main__":
    main()
