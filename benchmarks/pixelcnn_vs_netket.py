"""PixelCNN ``van_default(16)`` beside NetKet's ``FastARNNConv2D`` in the same run, call by call.

Both nets: 16×16 lattice, 3 masked layers × 64 features, kernel ``(7, 13)`` in NetKet's terms
(VAN's half-kernel 6), float32. Three measurements:

- exact ancestral sampling of ``batch`` = 100 and 1000 sequences (arjax: ``arjax.sample``, cached
  ``decode_step``; NetKet: ``ARDirectSampler`` with its per-layer caches), in samples/s;
- the gradient of the mean log-probability of 1000 random configurations
  (``jax.value_and_grad``), in seconds.

NetKet runs in its own venv (``/tmp/nkvenv``, built by ``../shared/peers/netket_bench.sh`` the
first time) as a worker process (``benchmarks/netket_worker.py``, its models from
``netket_bench.py``) that times one call when asked. Each side is compiled ahead of time and
warmed up once; then, ``--repeats`` times, a float32 2048² ``jnp.dot`` (3 calls), one arjax call
and one NetKet call follow each other, so that all three see the same load from other processes.
The best of each is kept, in wall seconds and in CPU seconds (``time.process_time``: all threads
of the process; time spent descheduled by other jobs is not counted), and both ratios are
printed. The gradient's useful FLOPs (unmasked taps only, edges counted as interior: 3 × the
forward pass) are set against the matmul's, per wall second and per CPU second. The 1-minute
load average is printed with every measurement.

Run: python benchmarks/pixelcnn_vs_netket.py [--repeats 3] [--skip-netket]
"""

import argparse
import os
import subprocess
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from common import Worker, compile_timed, emit, emit_environment, timed_cpu

import arjax
from arjax.nn import PixelCNN

PEERS = Path(__file__).resolve().parent.parent.parent / "shared" / "peers"
NETKET_SCRIPT = PEERS / "netket_bench.sh"
NETKET_VENV = Path(os.environ.get("VENV", "/tmp/nkvenv"))
WORKER = Path(__file__).resolve().parent / "netket_worker.py"
SAMPLE_BATCHES = (100, 1000)
GRAD_BATCH = 1000
MATMUL_SIZE = 2048


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-netket", action="store_true", help="time arjax only")
    parser.add_argument("--only", default="sample_b100,sample_b1000,grad_b1000", help="comma-separated measurements")
    args = parser.parse_args()

    emit_environment()
    peer = None
    if not args.skip_netket:
        if NETKET_SCRIPT.exists():
            python = NETKET_VENV / "bin" / "python"
            if not python.exists():  # build the venv with the peer's own script (no model, no section)
                subprocess.run(["bash", str(NETKET_SCRIPT)], env=dict(os.environ, MODELS="", SECTIONS=""), check=True)
            peer = Worker(python, WORKER, PEERS_DIR=str(PEERS), L="16", KH="7", KW="13", FEAT="64", LAYERS="3")
            emit("netket_versions", 0, "info", versions=peer.versions)
        else:
            emit("netket_skipped", 0, "info", reason=f"{NETKET_SCRIPT} not found")
    net = PixelCNN.van_default(16, key=jax.random.key(0))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    config = dict(net="PixelCNN.van_default(16)", N=256, K=2)
    a = jax.random.normal(jax.random.key(2), (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
    matmul, _ = compile_timed(jax.jit(jnp.dot), a, a)
    matmul_flops = 2 * MATMUL_SIZE**3

    for name in [m.strip() for m in args.only.split(",") if m.strip()]:
        kind, batch = name.rsplit("_b", 1)
        batch = int(batch)
        if kind == "sample":

            def fn(p, key, batch=batch):
                return arjax.sample(eqx.combine(p, static), key, (batch,))

            inputs = (params, jax.random.key(1))
        else:
            x = jax.random.bernoulli(jax.random.key(3), 0.5, (batch, 256)).astype(jnp.int32)

            def mean_log_prob(p, x):
                return jnp.mean(arjax.Autoregressive(eqx.combine(p, static)).log_prob(x))

            fn, inputs = jax.value_and_grad(mean_log_prob), (params, x)
        emit("load_average_1min", os.getloadavg()[0], "processes", before=name)
        ours, compile_s = compile_timed(jax.jit(fn), *inputs)
        jax.block_until_ready(ours(*inputs))
        theirs = peer.ask("prepare", name) if peer else None
        best = {k: float("inf") for k in ("matmul", "matmul_cpu", "ours", "ours_cpu", "theirs", "theirs_cpu")}
        for _ in range(args.repeats):
            _, wall, cpu = timed_cpu(matmul, a, a, repeats=3, warmup=False)
            best["matmul"], best["matmul_cpu"] = min(best["matmul"], wall), min(best["matmul_cpu"], cpu)
            _, wall, cpu = timed_cpu(ours, *inputs, repeats=1, warmup=False)
            best["ours"], best["ours_cpu"] = min(best["ours"], wall), min(best["ours_cpu"], cpu)
            if peer:
                run = peer.ask("run", name)
                best["theirs"] = min(best["theirs"], run["wall_s"])
                best["theirs_cpu"] = min(best["theirs_cpu"], run["cpu_s"])
        load = os.getloadavg()[0]
        peak, peak_cpu = matmul_flops / best["matmul"], matmul_flops / best["matmul_cpu"]
        emit("matmul_peak", peak / 1e9, "GFLOP/s", size=MATMUL_SIZE, dtype="float32", per_cpu_s=peak_cpu / 1e9,
             during=name)  # fmt: skip
        if kind == "sample":
            emit(f"arjax_pixelcnn_{name}", batch / best["ours"], "samples/s", batch=batch, compile_s=compile_s,
                 per_cpu_s=batch / best["ours_cpu"], **config)  # fmt: skip
            if peer:
                emit(f"netket_fastconv_{name}", batch / best["theirs"], "samples/s", batch=batch,
                     per_cpu_s=batch / best["theirs_cpu"], compile_s=theirs["compile_s"],
                     peer="NetKet FastARNNConv2D")  # fmt: skip
        else:
            useful = 3 * batch * forward_flops(net)
            emit(f"arjax_pixelcnn_log_prob_{name}", best["ours"], "s", cpu_s=best["ours_cpu"], compile_s=compile_s,
                 useful_gflop=round(useful / 1e9, 1), gflops_per_s=useful / best["ours"] / 1e9,
                 fraction_of_matmul_peak=round(useful / best["ours"] / peak, 4),
                 fraction_of_matmul_peak_cpu_s=round(useful / best["ours_cpu"] / peak_cpu, 4), target_fraction=0.4,
                 **config)  # fmt: skip
            if peer:
                emit(f"netket_fastconv_log_prob_{name}", best["theirs"], "s", cpu_s=best["theirs_cpu"],
                     compile_s=theirs["compile_s"], peer="NetKet FastARNNConv2D")  # fmt: skip
        if peer:
            emit(f"pixelcnn_{name}_speedup_vs_netket", best["theirs"] / best["ours"], "x",
                 per_cpu_s=best["theirs_cpu"] / best["ours_cpu"], target=3.0 if kind == "sample" else 5.0,
                 load_average_1min=load)  # fmt: skip
    if peer:
        peer.close()
    emit("load_average_1min", os.getloadavg()[0], "processes", after="all")


def forward_flops(net: PixelCNN) -> float:
    """Forward FLOPs of one sequence over the unmasked taps (edges counted as interior)."""
    h, w, k = net.half_kernel, net.width, net.num_categories
    taps = h * (2 * h + 1) + h
    channels = [k] + [w] * (net.depth - 1) + [w if net.final_conv else k]
    macs = sum((taps if j == 0 else taps + 1) * channels[j] * channels[j + 1] for j in range(net.depth))
    return 2 * (macs + (w * k if net.final_conv else 0)) * net.num_positions


if __name__ == "__main__":
    main()
