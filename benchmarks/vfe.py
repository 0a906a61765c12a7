"""Cost of one variational-free-energy (VAN) training step, beside a matmul peak and, optionally, VAN itself.

Prints one JSON line ``{"name", "value", "unit", ...}`` per measurement; extra keys give the
configuration. A step is what ``arjax.train.fit_free_energy`` runs for VAN's 16×16 ferromagnet at
β = 0.44 with VAN's options ``--z2 --clip_grad 1``: draw ``batch`` exact samples of q_z2, evaluate
``ln q_z2`` (two log-prob passes) and the energies, take the score-function gradient
(``arjax.objectives.free_energy_loss``), clip it to global norm 1 and apply Adam (lr 1e-3). It is
jitted and compiled ahead of time (``jit(...).lower(...).compile()``, ``compile_s`` reported apart),
run once to warm up, then timed as the best of ``--repeats`` calls (``block_until_ready``).
``*_samples_per_s`` is batch / step time (samples drawn *and* trained on per second).

Configurations:

- ``pixelcnn``: ``PixelCNN.van_default(16)`` (VAN's ``--net pixelcnn --net_depth 3 --net_width 64
  --half_kernel_size 6``) at batch 100 and 1000; its FLOPs per step counted analytically (7
  forward passes of the unmasked taps, see ``pixelcnn_useful_step_flops``) and as XLA's
  ``cost_analysis`` reports them for the compiled step (XLA costs a ``while`` loop's body once,
  not once per trip, so it sees 1 of the 256 sampling iterations; it also counts work on
  masked-out zeros), and
  the FLOP/s achieved against the peak of a jitted float32 2048×2048 ``jnp.dot`` measured in the
  same run (``matmul_peak``).
- ``made``: VAN's ``--net made --net_depth 3 --net_width 4`` on 16×16 has a masked input layer to
  4 channels × 256 sites, one masked 1024→1024 block and a masked output layer: two hidden layers of
  4·256 = 1024 units. The arjax analogue is ``MADE(num_positions=256, num_categories=2, depth=2,
  width=1024)`` (tokens enter as indicators against category 0 and the output is one logit
  difference per site: 256 inputs and outputs, as in VAN; GELU instead of PReLU); batch 1000.

``--reference`` runs ``../shared/peers/van_bench.sh`` (the PyTorch VAN reference; it builds its own
venv; its sections 1 and 3 for the configurations chosen here, 5–6 minutes for both, about one for
the MADE alone) and prints its seconds per step beside ours with the
speedups. Without it, or when that script is absent, the numbers published in
``../shared/peers/README.md`` for this machine are quoted instead (marked ``"published here"``).

``--reference-interleaved`` (MADE only) runs the reference's MADE step instead in a worker process
in VAN's venv (``benchmarks/van_worker.py``: the body of the training loop of VAN's ``main.py``, on
its own modules) and alternates its steps with ours, ``--repeats`` times after one warm-up step
each; the best wall and CPU seconds (``time.process_time``) of each side and both ratios are printed.

Run: python benchmarks/vfe.py [--sections pixelcnn,made] [--repeats 2] [--reference | --reference-interleaved]
"""

import argparse
import os
import re
import subprocess
import time
from pathlib import Path

import equinox as eqx
import jax
import optax
from common import Worker, chosen_sections, emit, emit_environment, matmul_peak, timed_cpu

from arjax.nn import MADE, PixelCNN
from arjax.objectives import free_energy_loss
from arjax.targets import IsingSquare

SECTIONS = ("pixelcnn", "made")
REFERENCE_SCRIPT = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "van_bench.sh"
# ../shared/peers/README.md: VAN (torch 2.13 CPU, float32) on this 2-core machine, seconds per step.
PUBLISHED = {"pixelcnn_b100": 23.1, "made_b1000": 3.9}
PUBLISHED_SAMPLES_PER_S = {"pixelcnn_b100": 4.4, "made_b1000": 263.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--pixelcnn-batches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--made-batch", type=int, default=1000)
    parser.add_argument("--L", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.44)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument(
        "--reference", action="store_true", help=f"also run the PyTorch VAN reference ({REFERENCE_SCRIPT}; 5–6 minutes)"
    )
    parser.add_argument("--reference-interleaved", action="store_true",
                        help="MADE only: VAN's step call by call (van_worker.py), alternating with ours")  # fmt: skip
    args = parser.parse_args()
    sections = chosen_sections(parser, args.sections, SECTIONS)

    emit_environment()
    peak = matmul_peak(args.matmul_size, max(5, args.repeats))
    ours = {}
    target = IsingSquare(args.L)
    if "pixelcnn" in sections:
        net = PixelCNN.van_default(args.L, key=jax.random.key(0))
        for batch in args.pixelcnn_batches:
            step_s, flops = bench_step(
                "pixelcnn",
                net,
                target,
                args.beta,
                batch,
                args.repeats,
                dict(net="PixelCNN.van_default", L=args.L, depth=3, width=64, half_kernel=6),
            )
            ours[f"pixelcnn_b{batch}"] = step_s
            useful = batch * pixelcnn_useful_step_flops(net)
            emit(
                f"pixelcnn_b{batch}_vfe_step_flops_analytic",
                useful / 1e9,
                "GFLOP",
                batch=batch,
                note="7 forward passes (1 sampling with a perfect cache + 2 ln q_z2 + 4 backward), unmasked taps only",
            )
            emit(
                f"pixelcnn_b{batch}_flops_per_s_analytic",
                useful / step_s / 1e9,
                "GFLOP/s",
                batch=batch,
                fraction_of_matmul_peak=round(useful / step_s / peak, 4),
            )
            if flops is not None:
                emit(
                    f"pixelcnn_b{batch}_flops_per_s_xla",
                    flops / step_s / 1e9,
                    "GFLOP/s",
                    batch=batch,
                    fraction_of_matmul_peak=round(flops / step_s / peak, 4),
                )
    if "made" in sections:
        n = args.L * args.L
        net = MADE(num_positions=n, num_categories=2, depth=2, width=4 * n, key=jax.random.key(0))
        step_s, _ = bench_step(
            "made",
            net,
            target,
            args.beta,
            args.made_batch,
            args.repeats,
            dict(net="MADE", N=n, depth=2, width=4 * n, van="--net made --net_depth 3 --net_width 4"),
            peer=van_worker() if args.reference_interleaved else None,
        )
        ours[f"made_b{args.made_batch}"] = step_s
        useful = args.made_batch * made_useful_step_flops(net)
        emit(
            f"made_b{args.made_batch}_vfe_step_flops_analytic",
            useful / 1e9,
            "GFLOP",
            batch=args.made_batch,
            note="cached sampling (each hidden unit once) + 2 ln q_z2 passes + their backward (2x)",
        )
        emit(
            f"made_b{args.made_batch}_flops_per_s_analytic",
            useful / step_s / 1e9,
            "GFLOP/s",
            batch=args.made_batch,
            fraction_of_matmul_peak=round(useful / step_s / peak, 4),
        )
    if args.L == 16:
        compare_with_reference(ours, args.reference)
    else:
        emit("reference_skipped", 0, "info", reason="VAN's numbers are for L=16")
    emit("load_average_1min", os.getloadavg()[0], "processes")


def van_worker():
    """VAN's MADE step in its own venv (built by its script when missing), asked one step at a time."""
    python = Path(os.environ.get("VAN_VENV", "/tmp/vanvenv")) / "bin" / "python"
    if not python.exists():
        subprocess.run(["bash", str(REFERENCE_SCRIPT)], env=dict(os.environ, SECTIONS=""), check=True)
    src = REFERENCE_SCRIPT.parent / "stat-mech-van" / "src_ising"
    worker = Worker(python, Path(__file__).resolve().parent / "van_worker.py", VAN_SRC=str(src))
    emit("van_versions", 0, "info", versions=worker.versions)
    return worker


def bench_step(name, net, target, beta, batch, repeats, config, peer=None):
    """Time one jitted VFE step (sample + ln q_z2 + score-function grad + clip + Adam); returns (s, FLOPs)."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt_state = optimizer.init(params)

    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(
            lambda p: free_energy_loss(eqx.combine(p, static), key, target, beta, batch, symmetry="z2")
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(1)
    start = time.perf_counter()
    compiled = jax.jit(step).lower(params, opt_state, key).compile()
    compile_s = time.perf_counter() - start
    flops = xla_flops(compiled)
    _, step_s, step_cpu = timed_cpu(compiled, params, opt_state, key, repeats=repeats)
    if peer is not None:  # VAN's steps alternate with ours; both sides' best of `repeats`
        peer.ask("prepare", f"{name}_b{batch}")
        theirs = theirs_cpu = float("inf")
        for _ in range(repeats):
            _, wall, cpu = timed_cpu(compiled, params, opt_state, key, repeats=1, warmup=False)
            step_s, step_cpu = min(step_s, wall), min(step_cpu, cpu)
            run = peer.ask("run", f"{name}_b{batch}")
            theirs, theirs_cpu = min(theirs, run["wall_s"]), min(theirs_cpu, run["cpu_s"])
        peer.close()
        emit(f"van_{name}_b{batch}_step_interleaved", theirs, "s", cpu_s=theirs_cpu, batch=batch,
             source="benchmarks/van_worker.py (VAN's own modules and loop body), alternating with arjax")  # fmt: skip
        emit(f"speedup_{name}_b{batch}_interleaved", theirs / step_s, "x", per_cpu_s=theirs_cpu / step_cpu,
             arjax_s=step_s, arjax_cpu_s=step_cpu, van_s=theirs, van_cpu_s=theirs_cpu, target=25.0,
             load_average_1min=os.getloadavg()[0])  # fmt: skip
    extra = dict(batch=batch, compile_s=compile_s, cpu_s=step_cpu, load_average_1min=os.getloadavg()[0], symmetry="z2",
                 clip_grad=1.0, beta=beta, **config)  # fmt: skip
    emit(f"{name}_b{batch}_vfe_step", step_s, "s", **extra)
    emit(f"{name}_b{batch}_samples_per_s", batch / step_s, "samples/s", batch=batch)
    if flops is not None:
        emit(
            f"{name}_b{batch}_vfe_step_flops_xla",
            flops / 1e9,
            "GFLOP",
            batch=batch,
            note="XLA cost_analysis of the compiled step; sampling loop body counted once",
        )
    return step_s, flops


def pixelcnn_useful_step_flops(net: PixelCNN) -> float:
    """Analytic FLOPs of one VFE step per sample: 7 forward passes of the unmasked taps.

    A masked ``(2h+1)×(2h+1)`` kernel has ``h(2h+1) + h`` taps before the site (type A, first
    layer) and one more (type B); a forward pass is ``2 · taps · C_in · C_out`` per site and layer
    (edges counted as interior; biases and PReLU ignored). A step is one sampling pass (as if
    perfectly cached), two log-prob passes (q(x) and q(1-x) for Z₂) and their backward (2× each).
    """
    h, w, k = net.half_kernel, net.width, net.num_categories
    taps_a = h * (2 * h + 1) + h
    channels = [k] + [w] * (net.depth - 1) + [w if net.final_conv else k]
    macs = sum((taps_a if j == 0 else taps_a + 1) * channels[j] * channels[j + 1] for j in range(net.depth))
    if net.final_conv:
        macs += w * k
    return 7 * 2 * macs * net.num_positions


def made_useful_step_flops(net: MADE) -> float:
    """Analytic FLOPs of one VFE step per sample for a MADE, counting masked weights as dense.

    The first and output layers multiply ``N(K-1)`` rows (tokens and logits against category 0),
    so a full pass is ``2·(2·N(K-1)·w + (depth-1)·w²)``. Cached sampling computes each hidden unit
    once (the units of degree i at site i: ``2·(depth-1)·w²`` over all sites), plus one
    first-layer column added and ``K-1`` output rows per site (``N·(w + 2(K-1)·w)``). A step adds
    two full passes for ``ln q_z2`` and their backward (2× each).
    """
    n, k, w, d = net.num_positions, net.num_categories, net.width, net.depth
    full = 2 * (2 * n * (k - 1) * w + (d - 1) * w * w)
    sampling = 2 * (d - 1) * w * w + n * (w + 2 * (k - 1) * w)
    return sampling + 3 * 2 * full


def xla_flops(compiled):
    """FLOPs from XLA's ``cost_analysis`` of the compiled step (None when the backend gives none).

    XLA costs a ``lax.scan``/``while`` body once, whatever the trip count, so the sampling loop is
    undercounted by its number of sites; read the analytic counts for FLOP/s.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    cost = cost[0] if isinstance(cost, list) else cost
    return None if not cost or "flops" not in cost else float(cost["flops"])


def compare_with_reference(ours: dict, run_reference: bool) -> None:
    """VAN's seconds per step (rerun with ``--reference``, else as published here) beside ours."""
    reference, source = dict(PUBLISHED), "published here (../shared/peers/README.md, 2-core CPU, torch 2.13)"
    if run_reference:
        if REFERENCE_SCRIPT.exists():
            van_sections = " ".join(section for name, section in (("pixelcnn_b100", "1"), ("made_b1000", "3"))
                                    if name in ours)  # fmt: skip
            measured = run_van_bench(van_sections)
            if measured:
                reference, source = measured, f"rerun now (van_bench.sh SECTIONS='{van_sections}')"
        else:
            emit("reference_skipped", 0, "info", reason=f"{REFERENCE_SCRIPT} not found")
    for name, ref_s in reference.items():
        if name in ours:
            emit(
                f"van_{name}_step",
                ref_s,
                "s",
                source=source,
                **({"samples_per_s": PUBLISHED_SAMPLES_PER_S[name]} if source.startswith("published") else {}),
            )
            emit(f"speedup_{name}", ref_s / ours[name], "x", arjax_s=round(ours[name], 4), van_s=ref_s, source=source)


def run_van_bench(sections: str) -> dict:
    """Run VAN's own training loop (section 1: PixelCNN batch 100, 3: MADE batch 1000); parse its SUMMARY lines."""
    env = dict(os.environ, SECTIONS=sections, PIX_BATCH="100", MADE_BATCH="1000")
    proc = subprocess.run(["bash", str(REFERENCE_SCRIPT)], env=env, capture_output=True, text=True)
    labels = {"pixelcnn_d3_w64_k13": "pixelcnn_b100", "made_d3_w4": "made_b1000"}
    found = {}
    for line in proc.stdout.splitlines():
        m = re.search(r"SUMMARY (\w+): batch=(\d+) .*total=([\d.]+)s/step", line)
        if m and m.group(1) in labels:
            found[labels[m.group(1)]] = float(m.group(3))
    if proc.returncode != 0 or not found:
        emit("reference_failed", proc.returncode, "exit code", stderr_tail=proc.stderr[-500:])
    return found


if __name__ == "__main__":
    main()
